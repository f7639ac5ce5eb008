/*
 * A fake libnvidia-ml.so.1 for ds01's tests: the real nvidia-ml-py (pynvml) runs against it.
 *
 * Every call re-reads the JSON file named by $DS01_FAKE_NVML, so a test changes the machine
 * between calls. Format (docs/testing.md):
 *   {"driver": "550.54.15",
 *    "gpus": [{"uuid": "GPU-...", "name": "NVIDIA A100-PCIE-40GB", "memory_mib": 40960,
 *              "mig": false, "utilization": 35, "lost": false,
 *              "processes": [{"pid": 4242, "used_mib": 1024}],
 *              "instances": [{"uuid": "MIG-...", "profile": "3g.20gb", "gi": 1, "ci": 0,
 *                             "memory_mib": 19968,
 *                             "processes": [{"pid": 4243, "used_mib": 512}]}]}]}
 * A GPU's index is its place in "gpus". "lost": true makes its handle fail with
 * NVML_ERROR_GPU_IS_LOST. Utilisation of a MIG-enabled GPU is NVML_ERROR_NOT_SUPPORTED, as on
 * real hardware. Without a readable file, nvmlInit fails with NVML_ERROR_DRIVER_NOT_LOADED.
 * Functions the fake lacks are simply absent: pynvml raises NVMLError_FunctionNotFound.
 */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9, NVML_ERROR_GPU_IS_LOST = 15, NVML_ERROR_NOT_FOUND = 6,
    NVML_ERROR_UNKNOWN = 999
};

#define MAX_GPUS 64
#define MAX_MIG 8
/* A handle points at one of these: (gpu, mig) with mig = -1 for the whole GPU. */
typedef struct { int gpu; int mig; } fake_handle;
static fake_handle handles[MAX_GPUS][MAX_MIG + 1];
typedef fake_handle *nvmlDevice_t;

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct {
    unsigned int pid; unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;

static cJSON *load(void) {
    const char *path = getenv("DS01_FAKE_NVML");
    if (!path) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return cJSON_Parse(buf);
}

static int initialised;

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    cJSON *root = load();
    if (!root) return NVML_ERROR_DRIVER_NOT_LOADED;
    cJSON_Delete(root);
    for (int g = 0; g < MAX_GPUS; g++)
        for (int m = 0; m <= MAX_MIG; m++) { handles[g][m].gpu = g; handles[g][m].mig = m - 1; }
    initialised = 1;
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlInit_v2(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlInit(void) { return nvmlInitWithFlags(0); }
nvmlReturn_t nvmlShutdown(void) { initialised = 0; return NVML_SUCCESS; }

const char *nvmlErrorString(nvmlReturn_t r) {
    switch (r) {
    case NVML_SUCCESS: return "Success";
    case NVML_ERROR_UNINITIALIZED: return "Uninitialized";
    case NVML_ERROR_INVALID_ARGUMENT: return "Invalid Argument";
    case NVML_ERROR_NOT_SUPPORTED: return "Not Supported";
    case NVML_ERROR_NOT_FOUND: return "Not Found";
    case NVML_ERROR_INSUFFICIENT_SIZE: return "Insufficient Size";
    case NVML_ERROR_DRIVER_NOT_LOADED: return "Driver Not Loaded";
    case NVML_ERROR_GPU_IS_LOST: return "GPU is lost";
    default: return "Unknown Error";
    }
}

/* The JSON object a handle stands for (a GPU or a MIG instance); *root must be freed. */
static nvmlReturn_t lookup(nvmlDevice_t h, cJSON **root, cJSON **gpu, cJSON **inst) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    if (!h) return NVML_ERROR_INVALID_ARGUMENT;
    *root = load();
    if (!*root) return NVML_ERROR_UNKNOWN;
    *gpu = cJSON_GetArrayItem(cJSON_GetObjectItem(*root, "gpus"), h->gpu);
    *inst = NULL;
    if (!*gpu) { cJSON_Delete(*root); return NVML_ERROR_NOT_FOUND; }
    if (cJSON_IsTrue(cJSON_GetObjectItem(*gpu, "lost"))) {
        cJSON_Delete(*root); return NVML_ERROR_GPU_IS_LOST;
    }
    if (h->mig >= 0) {
        *inst = cJSON_GetArrayItem(cJSON_GetObjectItem(*gpu, "instances"), h->mig);
        if (!*inst) { cJSON_Delete(*root); return NVML_ERROR_NOT_FOUND; }
    }
    return NVML_SUCCESS;
}

static nvmlReturn_t copy(char *out, unsigned int len, const char *s) {
    if (!s) s = "";
    if (strlen(s) + 1 > len) return NVML_ERROR_INSUFFICIENT_SIZE;
    strcpy(out, s);
    return NVML_SUCCESS;
}

static double number(cJSON *obj, const char *key, double dflt) {
    cJSON *v = cJSON_GetObjectItem(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int len) {
    cJSON *root = load();
    if (!root) return NVML_ERROR_UNINITIALIZED;
    nvmlReturn_t r = copy(version, len, cJSON_GetStringValue(cJSON_GetObjectItem(root, "driver")));
    cJSON_Delete(root);
    return r;
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    cJSON *root = load();
    if (!root) return NVML_ERROR_UNKNOWN;
    *count = (unsigned int)cJSON_GetArraySize(cJSON_GetObjectItem(root, "gpus"));
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device) {
    if (index >= MAX_GPUS) return NVML_ERROR_INVALID_ARGUMENT;
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(&handles[index][0], &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    cJSON_Delete(root);
    *device = &handles[index][0];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetIndex(nvmlDevice_t h, unsigned int *index) {
    if (!h) return NVML_ERROR_INVALID_ARGUMENT;
    *index = (unsigned int)h->gpu;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t h, char *uuid, unsigned int len) {
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(h, &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    r = copy(uuid, len, cJSON_GetStringValue(cJSON_GetObjectItem(inst ? inst : gpu, "uuid")));
    cJSON_Delete(root);
    return r;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t h, char *name, unsigned int len) {
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(h, &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    char full[256];
    const char *base = cJSON_GetStringValue(cJSON_GetObjectItem(gpu, "name"));
    if (inst) /* real MIG device names end in "MIG <profile>" */
        snprintf(full, sizeof full, "%s MIG %s", base ? base : "",
                 cJSON_GetStringValue(cJSON_GetObjectItem(inst, "profile")));
    else
        snprintf(full, sizeof full, "%s", base ? base : "");
    r = copy(name, len, full);
    cJSON_Delete(root);
    return r;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t h, nvmlMemory_t *mem) {
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(h, &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    cJSON *obj = inst ? inst : gpu;
    unsigned long long used = 0;
    cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(obj, "processes"))
        used += (unsigned long long)number(p, "used_mib", 0) << 20;
    mem->total = (unsigned long long)number(obj, "memory_mib", 0) << 20;
    mem->used = used;
    mem->free = mem->total > used ? mem->total - used : 0;
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetUtilizationRates(nvmlDevice_t h, nvmlUtilization_t *util) {
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(h, &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    if (inst || cJSON_IsTrue(cJSON_GetObjectItem(gpu, "mig"))) {
        cJSON_Delete(root); return NVML_ERROR_NOT_SUPPORTED;
    }
    util->gpu = (unsigned int)number(gpu, "utilization", 0);
    util->memory = 0;
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t h, unsigned int *current, unsigned int *pending) {
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(h, &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    if (inst) { cJSON_Delete(root); return NVML_ERROR_NOT_SUPPORTED; }
    *current = *pending = cJSON_IsTrue(cJSON_GetObjectItem(gpu, "mig")) ? 1 : 0;
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t h, unsigned int *count) {
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(h, &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    *count = cJSON_IsTrue(cJSON_GetObjectItem(gpu, "mig")) ? 7 : 0;
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMigDeviceHandleByIndex(nvmlDevice_t h, unsigned int index,
                                                 nvmlDevice_t *mig) {
    if (!h || h->mig >= 0 || index >= MAX_MIG) return NVML_ERROR_INVALID_ARGUMENT;
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(&handles[h->gpu][index + 1], &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    cJSON_Delete(root);
    *mig = &handles[h->gpu][index + 1];
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceIsMigDeviceHandle(nvmlDevice_t h, unsigned int *is_mig) {
    if (!h) return NVML_ERROR_INVALID_ARGUMENT;
    *is_mig = h->mig >= 0;
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetDeviceHandleFromMigDeviceHandle(nvmlDevice_t mig, nvmlDevice_t *h) {
    if (!mig || mig->mig < 0) return NVML_ERROR_INVALID_ARGUMENT;
    *h = &handles[mig->gpu][0];
    return NVML_SUCCESS;
}

static nvmlReturn_t instance_id(nvmlDevice_t h, const char *key, unsigned int *id) {
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(h, &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    if (!inst) { cJSON_Delete(root); return NVML_ERROR_INVALID_ARGUMENT; }
    *id = (unsigned int)number(inst, key, 0);
    cJSON_Delete(root);
    return NVML_SUCCESS;
}
nvmlReturn_t nvmlDeviceGetGpuInstanceId(nvmlDevice_t h, unsigned int *id) {
    return instance_id(h, "gi", id);
}
nvmlReturn_t nvmlDeviceGetComputeInstanceId(nvmlDevice_t h, unsigned int *id) {
    return instance_id(h, "ci", id);
}

/* On a MIG device handle: the instance's processes. On a GPU: its own processes, and those
 * of all its instances (with their instance ids), as the real driver reports them. */
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t h, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(h, &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    nvmlProcessInfo_t found[512];
    unsigned int n = 0;
    cJSON *owners[MAX_MIG + 1];
    int owners_n = 0;
    if (inst) owners[owners_n++] = inst;
    else {
        owners[owners_n++] = gpu;
        cJSON *i;
        cJSON_ArrayForEach(i, cJSON_GetObjectItem(gpu, "instances"))
            if (owners_n <= MAX_MIG) owners[owners_n++] = i;
    }
    for (int o = 0; o < owners_n; o++) {
        cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItem(owners[o], "processes")) {
            if (n >= 512) break;
            found[n].pid = (unsigned int)number(p, "pid", 0);
            found[n].usedGpuMemory = (unsigned long long)number(p, "used_mib", 0) << 20;
            int is_inst = owners[o] != gpu;
            found[n].gpuInstanceId = is_inst ? (unsigned int)number(owners[o], "gi", 0) : 0xFFFFFFFF;
            found[n].computeInstanceId = is_inst ? (unsigned int)number(owners[o], "ci", 0) : 0xFFFFFFFF;
            n++;
        }
    }
    cJSON_Delete(root);
    if (!infos || *count < n) {
        *count = n;
        return n == 0 ? NVML_SUCCESS : NVML_ERROR_INSUFFICIENT_SIZE;
    }
    memcpy(infos, found, n * sizeof *found);
    *count = n;
    return NVML_SUCCESS;
}
