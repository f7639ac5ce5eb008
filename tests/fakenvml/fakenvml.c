/*
 * A fake libnvidia-ml.so.1 for ds01's tests: the real nvidia-ml-py (pynvml) runs against it.
 *
 * Every call re-reads the JSON file named by $DS01_FAKE_NVML, so a test changes the machine
 * between calls; calls that change the machine (MIG mode, GPU and compute instances) write it
 * back (to a temporary file renamed over it). Format (docs/testing.md):
 *   {"driver": "550.54.15", "serial": 0,
 *    "gpus": [{"uuid": "GPU-...", "name": "NVIDIA A100-PCIE-40GB", "memory_mib": 40960,
 *              "mig": false, "mig_pending": false, "mig_reset_required": false,
 *              "held": false, "utilization": 35, "lost": false,
 *              "processes": [{"pid": 4242, "used_mib": 1024, "name": "python"}],
 *              "graphics": [{"pid": 1500, "used_mib": 16, "name": "Xorg"}],
 *              "instances": [{"uuid": "MIG-...", "profile": "3g.20gb", "gi": 1, "ci": 0,
 *                             "start": 0, "memory_mib": 19968,
 *                             "processes": [{"pid": 4243, "used_mib": 512}]}]}]}
 * A GPU's index is its place in "gpus". "lost": true makes its handle fail with
 * NVML_ERROR_GPU_IS_LOST. Utilisation of a MIG-enabled GPU is NVML_ERROR_NOT_SUPPORTED, as on
 * real hardware. Without a readable file, nvmlInit fails with NVML_ERROR_DRIVER_NOT_LOADED.
 * Functions the fake lacks are simply absent: pynvml raises NVMLError_FunctionNotFound.
 *
 * MIG: the profiles and placements of each GPU model (A100 40GB and 80GB, H100 80GB) are those
 * the real driver reports, read from gpu-models.json beside this library (copied there from
 * ds01d/adapters/gpu_models.json when it is built). A GPU whose name is not listed there does
 * not support MIG. An instance is a GPU instance ("gi", its placement "start" in memory
 * slices) with at most one compute instance ("ci"; null: none); only instances with a
 * compute instance are MIG devices. An instance without "start" takes the first free
 * placement of its profile, in the order listed.
 *
 * The errors real drivers give: a profile the GPU lacks is NVML_ERROR_NOT_SUPPORTED; a
 * placement that overlaps another instance, or a profile whose instances are all taken,
 * NVML_ERROR_INSUFFICIENT_RESOURCES; destroying a compute instance with processes on it, or
 * a GPU instance that still has a compute instance, NVML_ERROR_IN_USE. Setting MIG mode
 * while processes run on the GPU, a graphics client uses it or it is "held" (by
 * nvidia-persistenced or nvidia_drm, which NVML cannot name) leaves the new mode pending
 * with the activation status NVML_ERROR_IN_USE; "mig_reset_required": true leaves it pending
 * with NVML_ERROR_RESET_REQUIRED (a test "resets" the GPU by setting "mig" to the pending mode).
 */
#define _GNU_SOURCE
#include <cjson/cJSON.h>
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef int nvmlReturn_t;
enum {
    NVML_SUCCESS = 0, NVML_ERROR_UNINITIALIZED = 1, NVML_ERROR_INVALID_ARGUMENT = 2,
    NVML_ERROR_NOT_SUPPORTED = 3, NVML_ERROR_NOT_FOUND = 6, NVML_ERROR_INSUFFICIENT_SIZE = 7,
    NVML_ERROR_DRIVER_NOT_LOADED = 9, NVML_ERROR_GPU_IS_LOST = 15,
    NVML_ERROR_RESET_REQUIRED = 16, NVML_ERROR_IN_USE = 19,
    NVML_ERROR_INSUFFICIENT_RESOURCES = 23, NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
    NVML_ERROR_UNKNOWN = 999
};
#define GI_PROFILE_INFO_V2 0x02000098u
#define CI_PROFILE_INFO_V2 0x02000088u
#define NAME_V2 96

#define MAX_GPUS 64
#define MAX_MIG 8
#define MAX_GI 16
/* A handle points at one of these: (gpu, mig) with mig = -1 for the whole GPU and k >= 0 for
 * the k-th MIG device (the k-th instance with a compute instance). */
typedef struct { int gpu; int mig; } fake_handle;
static fake_handle handles[MAX_GPUS][MAX_MIG + 1];
typedef fake_handle *nvmlDevice_t;
typedef struct { int gpu; unsigned int id; } fake_gi;
static fake_gi gi_handles[MAX_GPUS][MAX_GI];
typedef fake_gi *nvmlGpuInstance_t;
typedef struct { int gpu; unsigned int gi; } fake_ci; /* one compute instance per GPU instance */
static fake_ci ci_handles[MAX_GPUS][MAX_GI];
typedef fake_ci *nvmlComputeInstance_t;

typedef struct { unsigned long long total, free, used; } nvmlMemory_t;
typedef struct { unsigned int gpu, memory; } nvmlUtilization_t;
typedef struct {
    unsigned int pid; unsigned long long usedGpuMemory;
    unsigned int gpuInstanceId, computeInstanceId;
} nvmlProcessInfo_t;
typedef struct { unsigned int start, size; } nvmlGpuInstancePlacement_t;
typedef struct {
    unsigned int id, isP2pSupported, sliceCount, instanceCount, multiprocessorCount,
        copyEngineCount, decoderCount, encoderCount, jpegCount, ofaCount;
    unsigned long long memorySizeMB;
} nvmlGpuInstanceProfileInfo_t;
typedef struct {
    unsigned int version, id, isP2pSupported, sliceCount, instanceCount, multiprocessorCount,
        copyEngineCount, decoderCount, encoderCount, jpegCount, ofaCount;
    unsigned long long memorySizeMB;
    char name[NAME_V2];
} nvmlGpuInstanceProfileInfo_v2_t;
typedef struct {
    nvmlDevice_t device; unsigned int id, profileId; nvmlGpuInstancePlacement_t placement;
} nvmlGpuInstanceInfo_t;
typedef struct {
    unsigned int version, id, sliceCount, instanceCount, multiprocessorCount,
        sharedCopyEngineCount, sharedDecoderCount, sharedEncoderCount, sharedJpegCount,
        sharedOfaCount;
    char name[NAME_V2];
} nvmlComputeInstanceProfileInfo_v2_t;
typedef struct {
    nvmlDevice_t device; nvmlGpuInstance_t gpuInstance; unsigned int id, profileId;
    nvmlGpuInstancePlacement_t placement;
} nvmlComputeInstanceInfo_t;

/* ---- the machine file ---------------------------------------------------------------- */

/* A JSON file, parsed (NULL: unreadable or not JSON); the caller frees it. */
static cJSON *read_json(const char *path) {
    if (!path) return NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    static char buf[1 << 20];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    return cJSON_Parse(buf);
}

static cJSON *load(void) { return read_json(getenv("DS01_FAKE_NVML")); }

/* Write the machine back (atomically) and free it. */
static nvmlReturn_t save(cJSON *root) {
    const char *path = getenv("DS01_FAKE_NVML");
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!path || !text) { free(text); return NVML_ERROR_UNKNOWN; }
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) { free(text); return NVML_ERROR_UNKNOWN; }
    size_t len = strlen(text), done = fwrite(text, 1, len, f);
    free(text);
    if (fclose(f) != 0 || done != len || rename(tmp, path) != 0) {
        unlink(tmp);
        return NVML_ERROR_UNKNOWN;
    }
    return NVML_SUCCESS;
}

static int initialised;

nvmlReturn_t nvmlInitWithFlags(unsigned int flags) {
    (void)flags;
    cJSON *root = load();
    if (!root) return NVML_ERROR_DRIVER_NOT_LOADED;
    cJSON_Delete(root);
    for (int g = 0; g < MAX_GPUS; g++) {
        for (int m = 0; m <= MAX_MIG; m++) { handles[g][m].gpu = g; handles[g][m].mig = m - 1; }
        for (int i = 0; i < MAX_GI; i++) {
            gi_handles[g][i].gpu = ci_handles[g][i].gpu = g;
            gi_handles[g][i].id = ci_handles[g][i].gi = (unsigned int)i;
        }
    }
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
    case NVML_ERROR_RESET_REQUIRED: return "GPU requires restart";
    case NVML_ERROR_IN_USE: return "In use by another client";
    case NVML_ERROR_INSUFFICIENT_RESOURCES: return "Insufficient resources";
    default: return "Unknown Error";
    }
}

static double number(cJSON *obj, const char *key, double dflt) {
    cJSON *v = cJSON_GetObjectItem(obj, key);
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static int has_ci(cJSON *inst) {
    cJSON *ci = cJSON_GetObjectItem(inst, "ci");
    return !cJSON_IsNull(ci); /* absent: a compute instance 0 (older files) */
}

/* The k-th instance of a GPU that is a MIG device (has a compute instance). */
static cJSON *mig_device(cJSON *gpu, int k) {
    cJSON *i;
    cJSON_ArrayForEach(i, cJSON_GetObjectItem(gpu, "instances"))
        if (has_ci(i) && k-- == 0) return i;
    return NULL;
}

static cJSON *instance_by_gi(cJSON *gpu, unsigned int gi) {
    cJSON *i;
    cJSON_ArrayForEach(i, cJSON_GetObjectItem(gpu, "instances"))
        if ((unsigned int)number(i, "gi", -1) == gi) return i;
    return NULL;
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
        *inst = mig_device(*gpu, h->mig);
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

/* ---- the GPU models (profiles and placements), read once from beside this library ----- */

static cJSON *models_file(void) {
    static cJSON *models;
    static int tried;
    if (tried) return models;
    tried = 1;
    Dl_info info;
    if (!dladdr((void *)&nvmlInitWithFlags, &info) || !info.dli_fname) return NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s", info.dli_fname);
    char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path + 1) : 0;
    snprintf(path + dir, sizeof path - dir, "gpu-models.json");
    models = read_json(path);
    return models;
}

/* The model entry of a GPU (by its name), or NULL: no MIG on this GPU. */
static cJSON *model_of(cJSON *gpu) {
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(gpu, "name"));
    cJSON *m, *n;
    if (!name) return NULL;
    cJSON_ArrayForEach(m, cJSON_GetObjectItem(models_file(), "models"))
        cJSON_ArrayForEach(n, cJSON_GetObjectItem(m, "names"))
            if (strcmp(cJSON_GetStringValue(n), name) == 0) return m;
    return NULL;
}

static cJSON *profile_where(cJSON *model, const char *key, double value, const char *name) {
    cJSON *p;
    cJSON_ArrayForEach(p, cJSON_GetObjectItem(model, "profiles")) {
        const char *pname = cJSON_GetStringValue(cJSON_GetObjectItem(p, "name"));
        if (name ? pname && strcmp(pname, name) == 0 : number(p, key, -1) == value) return p;
    }
    return NULL;
}
static cJSON *profile_by_index(cJSON *model, unsigned int i) { return profile_where(model, "index", i, NULL); }
static cJSON *profile_by_id(cJSON *model, unsigned int id) { return profile_where(model, "id", id, NULL); }
static cJSON *profile_named(cJSON *model, const char *name) {
    return name ? profile_where(model, NULL, 0, name) : NULL;
}

/* A placement is [start, size] in memory slices. */
static unsigned int pl_start(cJSON *pl) { return (unsigned int)cJSON_GetArrayItem(pl, 0)->valuedouble; }
static unsigned int pl_size(cJSON *pl) { return (unsigned int)cJSON_GetArrayItem(pl, 1)->valuedouble; }

static unsigned int placement_size(cJSON *profile, unsigned int start) {
    cJSON *pl;
    cJSON_ArrayForEach(pl, cJSON_GetObjectItem(profile, "placements"))
        if (pl_start(pl) == start) return pl_size(pl);
    return 0;
}

static unsigned int bits(unsigned int start, unsigned int size) {
    return size >= 32 ? ~0u : ((1u << size) - 1) << start;
}

/* Memory slices taken by the GPU's instances; an instance without "start" takes the first
 * free placement of its profile (and keeps it: the value is written into the object). */
static unsigned int occupied(cJSON *gpu, cJSON *model) {
    unsigned int mask = 0;
    cJSON *i, *pl;
    cJSON_ArrayForEach(i, cJSON_GetObjectItem(gpu, "instances")) {
        cJSON *p = profile_named(model, cJSON_GetStringValue(cJSON_GetObjectItem(i, "profile")));
        if (!p || !cJSON_IsNumber(cJSON_GetObjectItem(i, "start"))) continue;
        unsigned int start = (unsigned int)number(i, "start", 0);
        mask |= bits(start, placement_size(p, start));
    }
    cJSON_ArrayForEach(i, cJSON_GetObjectItem(gpu, "instances")) {
        cJSON *p = profile_named(model, cJSON_GetStringValue(cJSON_GetObjectItem(i, "profile")));
        if (!p || cJSON_IsNumber(cJSON_GetObjectItem(i, "start"))) continue;
        cJSON_ArrayForEach(pl, cJSON_GetObjectItem(p, "placements")) {
            unsigned int b = bits(pl_start(pl), pl_size(pl));
            if (!(mask & b)) {
                mask |= b;
                cJSON_AddNumberToObject(i, "start", pl_start(pl));
                break;
            }
        }
    }
    return mask;
}

/* ---- devices --------------------------------------------------------------------------- */

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

static int mig_on(cJSON *gpu) { return cJSON_IsTrue(cJSON_GetObjectItem(gpu, "mig")); }

static int mig_pending(cJSON *gpu) {
    cJSON *p = cJSON_GetObjectItem(gpu, "mig_pending");
    return cJSON_IsBool(p) ? cJSON_IsTrue(p) : mig_on(gpu);
}

nvmlReturn_t nvmlDeviceGetMigMode(nvmlDevice_t h, unsigned int *current, unsigned int *pending) {
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(h, &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    if (inst || !model_of(gpu)) { cJSON_Delete(root); return NVML_ERROR_NOT_SUPPORTED; }
    *current = (unsigned int)mig_on(gpu);
    *pending = (unsigned int)mig_pending(gpu);
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMaxMigDeviceCount(nvmlDevice_t h, unsigned int *count) {
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(h, &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    *count = mig_on(gpu) ? 7 : 0;
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

/* ---- processes ------------------------------------------------------------------------- */

static nvmlReturn_t processes(nvmlDevice_t h, const char *key, unsigned int *count,
                              nvmlProcessInfo_t *infos) {
    cJSON *root, *gpu, *inst;
    nvmlReturn_t r = lookup(h, &root, &gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    nvmlProcessInfo_t found[512];
    unsigned int n = 0;
    cJSON *owners[MAX_GI + 1];
    int owners_n = 0;
    if (inst) owners[owners_n++] = inst;
    else {
        owners[owners_n++] = gpu;
        cJSON *i;
        cJSON_ArrayForEach(i, cJSON_GetObjectItem(gpu, "instances"))
            if (owners_n <= MAX_GI) owners[owners_n++] = i;
    }
    for (int o = 0; o < owners_n; o++) {
        cJSON *p;
        cJSON_ArrayForEach(p, cJSON_GetObjectItem(owners[o], key)) {
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

/* On a MIG device handle: the instance's processes. On a GPU: its own processes, and those
 * of all its instances (with their instance ids), as the real driver reports them. */
nvmlReturn_t nvmlDeviceGetComputeRunningProcesses_v3(nvmlDevice_t h, unsigned int *count,
                                                     nvmlProcessInfo_t *infos) {
    return processes(h, "processes", count, infos);
}
nvmlReturn_t nvmlDeviceGetGraphicsRunningProcesses_v3(nvmlDevice_t h, unsigned int *count,
                                                      nvmlProcessInfo_t *infos) {
    return processes(h, "graphics", count, infos);
}

static const char *process_name(cJSON *list, unsigned int pid) {
    cJSON *p;
    cJSON_ArrayForEach(p, list)
        if ((unsigned int)number(p, "pid", 0) == pid)
            return cJSON_GetStringValue(cJSON_GetObjectItem(p, "name"));
    return NULL;
}

nvmlReturn_t nvmlSystemGetProcessName(unsigned int pid, char *name, unsigned int len) {
    if (!initialised) return NVML_ERROR_UNINITIALIZED;
    cJSON *root = load(), *gpu, *inst;
    if (!root) return NVML_ERROR_UNKNOWN;
    const char *found = NULL;
    cJSON_ArrayForEach(gpu, cJSON_GetObjectItem(root, "gpus")) {
        if (!found) found = process_name(cJSON_GetObjectItem(gpu, "processes"), pid);
        if (!found) found = process_name(cJSON_GetObjectItem(gpu, "graphics"), pid);
        cJSON_ArrayForEach(inst, cJSON_GetObjectItem(gpu, "instances"))
            if (!found) found = process_name(cJSON_GetObjectItem(inst, "processes"), pid);
    }
    nvmlReturn_t r = found ? copy(name, len, found) : NVML_ERROR_NOT_FOUND;
    cJSON_Delete(root);
    return r;
}

/* ---- MIG management -------------------------------------------------------------------- */

/* The GPU of a GPU handle, with its model; *root must be freed on success. */
static nvmlReturn_t mig_gpu(nvmlDevice_t h, cJSON **root, cJSON **gpu, cJSON **model) {
    cJSON *inst;
    nvmlReturn_t r = lookup(h, root, gpu, &inst);
    if (r != NVML_SUCCESS) return r;
    *model = model_of(*gpu);
    if (inst) { cJSON_Delete(*root); return NVML_ERROR_INVALID_ARGUMENT; }
    if (!*model) { cJSON_Delete(*root); return NVML_ERROR_NOT_SUPPORTED; }
    occupied(*gpu, *model); /* fix implicit placements first: what is written back keeps them */
    return NVML_SUCCESS;
}

static void fill_info(cJSON *p, nvmlGpuInstanceProfileInfo_v2_t *out) {
    out->id = (unsigned int)number(p, "id", 0);
    out->isP2pSupported = 0;
    out->sliceCount = (unsigned int)number(p, "slices", 0);
    out->instanceCount = (unsigned int)number(p, "instances", 0);
    out->multiprocessorCount = (unsigned int)number(p, "multiprocessors", 0);
    out->copyEngineCount = (unsigned int)number(p, "copy_engines", 0);
    out->decoderCount = (unsigned int)number(p, "decoders", 0);
    out->encoderCount = (unsigned int)number(p, "encoders", 0);
    out->jpegCount = (unsigned int)number(p, "jpeg", 0);
    out->ofaCount = (unsigned int)number(p, "ofa", 0);
    out->memorySizeMB = (unsigned long long)number(p, "memory_mib", 0);
    snprintf(out->name, sizeof out->name, "MIG %s", cJSON_GetStringValue(cJSON_GetObjectItem(p, "name")));
}

nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfoV(nvmlDevice_t h, unsigned int profile,
                                                  nvmlGpuInstanceProfileInfo_v2_t *info) {
    if (!info) return NVML_ERROR_INVALID_ARGUMENT;
    if (info->version != GI_PROFILE_INFO_V2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    cJSON *root, *gpu, *model;
    nvmlReturn_t r = mig_gpu(h, &root, &gpu, &model);
    if (r != NVML_SUCCESS) return r;
    cJSON *p = profile_by_index(model, profile);
    if (p) fill_info(p, info);
    cJSON_Delete(root);
    return p ? NVML_SUCCESS : (profile < 0x12 ? NVML_ERROR_NOT_SUPPORTED : NVML_ERROR_INVALID_ARGUMENT);
}

nvmlReturn_t nvmlDeviceGetGpuInstanceProfileInfo(nvmlDevice_t h, unsigned int profile,
                                                 nvmlGpuInstanceProfileInfo_t *info) {
    nvmlGpuInstanceProfileInfo_v2_t v2 = {.version = GI_PROFILE_INFO_V2};
    nvmlReturn_t r = nvmlDeviceGetGpuInstanceProfileInfoV(h, profile, &v2);
    if (r == NVML_SUCCESS) memcpy(info, &v2.id, sizeof *info);
    return r;
}

nvmlReturn_t nvmlDeviceGetGpuInstancePossiblePlacements_v2(
        nvmlDevice_t h, unsigned int profileId, nvmlGpuInstancePlacement_t *placements,
        unsigned int *count) {
    if (!count) return NVML_ERROR_INVALID_ARGUMENT;
    cJSON *root, *gpu, *model;
    nvmlReturn_t r = mig_gpu(h, &root, &gpu, &model);
    if (r != NVML_SUCCESS) return r;
    cJSON *p = profile_by_id(model, profileId), *pl;
    if (!p) { cJSON_Delete(root); return NVML_ERROR_INVALID_ARGUMENT; }
    unsigned int n = (unsigned int)cJSON_GetArraySize(cJSON_GetObjectItem(p, "placements"));
    if (placements) {
        if (*count < n) { cJSON_Delete(root); *count = n; return NVML_ERROR_INSUFFICIENT_SIZE; }
        unsigned int k = 0;
        cJSON_ArrayForEach(pl, cJSON_GetObjectItem(p, "placements")) {
            placements[k].start = pl_start(pl);
            placements[k].size = pl_size(pl);
            k++;
        }
    }
    *count = n;
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

static unsigned int count_of(cJSON *gpu, const char *profile) {
    unsigned int n = 0;
    cJSON *i;
    cJSON_ArrayForEach(i, cJSON_GetObjectItem(gpu, "instances")) {
        const char *mine = cJSON_GetStringValue(cJSON_GetObjectItem(i, "profile"));
        n += mine && strcmp(mine, profile) == 0;
    }
    return n;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceRemainingCapacity(nvmlDevice_t h, unsigned int profileId,
                                                       unsigned int *count) {
    cJSON *root, *gpu, *model, *pl;
    nvmlReturn_t r = mig_gpu(h, &root, &gpu, &model);
    if (r != NVML_SUCCESS) return r;
    cJSON *p = profile_by_id(model, profileId);
    if (!p) { cJSON_Delete(root); return NVML_ERROR_INVALID_ARGUMENT; }
    unsigned int mask = occupied(gpu, model), left = 0;
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(p, "name"));
    unsigned int room = (unsigned int)number(p, "instances", 0) - count_of(gpu, name);
    cJSON_ArrayForEach(pl, cJSON_GetObjectItem(p, "placements")) {
        unsigned int b = bits(pl_start(pl), pl_size(pl));
        if (!(mask & b) && left < room) { mask |= b; left++; }
    }
    *count = mig_on(gpu) ? left : 0;
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

static void new_uuid(cJSON *root, cJSON *gpu, char *out, size_t len) {
    unsigned int serial = (unsigned int)number(root, "serial", 0) + 1;
    cJSON_DeleteItemFromObject(root, "serial");
    cJSON_AddNumberToObject(root, "serial", serial);
    unsigned long long h = 1469598103934665603ULL;
    const char *s = cJSON_GetStringValue(cJSON_GetObjectItem(gpu, "uuid"));
    for (; s && *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    h = (h ^ serial) * 1099511628211ULL;
    snprintf(out, len, "MIG-%08x-%04x-%04x-%04x-%012llx", (unsigned int)(h >> 32),
             (unsigned int)(h >> 16) & 0xFFFF, serial & 0xFFFF, (unsigned int)h & 0xFFFF,
             (h * 31 + serial) & 0xFFFFFFFFFFFFULL);
}

static nvmlReturn_t create_gi(nvmlDevice_t h, unsigned int profileId,
                              const nvmlGpuInstancePlacement_t *placement,
                              nvmlGpuInstance_t *out) {
    if (!out) return NVML_ERROR_INVALID_ARGUMENT;
    cJSON *root, *gpu, *model, *pl;
    nvmlReturn_t r = mig_gpu(h, &root, &gpu, &model);
    if (r != NVML_SUCCESS) return r;
    cJSON *p = profile_by_id(model, profileId);
    if (!mig_on(gpu)) { cJSON_Delete(root); return NVML_ERROR_NOT_SUPPORTED; }
    if (!p) { cJSON_Delete(root); return NVML_ERROR_INVALID_ARGUMENT; }
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(p, "name"));
    unsigned int mask = occupied(gpu, model);
    int start = -1, valid = 0;
    cJSON_ArrayForEach(pl, cJSON_GetObjectItem(p, "placements")) {
        if (placement && (placement->start != pl_start(pl) || placement->size != pl_size(pl)))
            continue;
        valid = 1;
        if (!(mask & bits(pl_start(pl), pl_size(pl)))) { start = (int)pl_start(pl); break; }
    }
    if (!valid) { cJSON_Delete(root); return NVML_ERROR_INVALID_ARGUMENT; }
    if (start < 0 || count_of(gpu, name) >= (unsigned int)number(p, "instances", 0)) {
        cJSON_Delete(root); return NVML_ERROR_INSUFFICIENT_RESOURCES;
    }
    unsigned int id = 1;
    while (id < MAX_GI && instance_by_gi(gpu, id)) id++;
    if (id >= MAX_GI) { cJSON_Delete(root); return NVML_ERROR_INSUFFICIENT_RESOURCES; }
    cJSON *inst = cJSON_CreateObject();
    cJSON_AddStringToObject(inst, "profile", name);
    cJSON_AddNumberToObject(inst, "gi", id);
    cJSON_AddNullToObject(inst, "ci");
    cJSON_AddNumberToObject(inst, "start", start);
    cJSON_AddNumberToObject(inst, "memory_mib", number(p, "memory_mib", 0));
    cJSON_AddItemToObject(inst, "processes", cJSON_CreateArray());
    if (!cJSON_GetObjectItem(gpu, "instances")) cJSON_AddItemToObject(gpu, "instances", cJSON_CreateArray());
    cJSON_AddItemToArray(cJSON_GetObjectItem(gpu, "instances"), inst);
    *out = &gi_handles[h->gpu][id];
    return save(root);
}

nvmlReturn_t nvmlDeviceCreateGpuInstanceWithPlacement(nvmlDevice_t h, unsigned int profileId,
                                                      const nvmlGpuInstancePlacement_t *placement,
                                                      nvmlGpuInstance_t *gi) {
    if (!placement) return NVML_ERROR_INVALID_ARGUMENT;
    return create_gi(h, profileId, placement, gi);
}

nvmlReturn_t nvmlDeviceCreateGpuInstance(nvmlDevice_t h, unsigned int profileId,
                                         nvmlGpuInstance_t *gi) {
    return create_gi(h, profileId, NULL, gi);
}

nvmlReturn_t nvmlDeviceGetGpuInstances(nvmlDevice_t h, unsigned int profileId,
                                       nvmlGpuInstance_t *gis, unsigned int *count) {
    if (!gis || !count) return NVML_ERROR_INVALID_ARGUMENT;
    cJSON *root, *gpu, *model, *i;
    nvmlReturn_t r = mig_gpu(h, &root, &gpu, &model);
    if (r != NVML_SUCCESS) return r;
    cJSON *p = profile_by_id(model, profileId);
    if (!p) { cJSON_Delete(root); return NVML_ERROR_INVALID_ARGUMENT; }
    if (!mig_on(gpu)) { cJSON_Delete(root); return NVML_ERROR_NOT_SUPPORTED; }
    unsigned int n = 0;
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(p, "name"));
    cJSON_ArrayForEach(i, cJSON_GetObjectItem(gpu, "instances")) {
        const char *mine = cJSON_GetStringValue(cJSON_GetObjectItem(i, "profile"));
        if (!mine || strcmp(mine, name) != 0) continue;
        unsigned int id = (unsigned int)number(i, "gi", 0);
        if (id < MAX_GI && n < (unsigned int)number(p, "instances", 0))
            gis[n++] = &gi_handles[h->gpu][id];
    }
    *count = n;
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetGpuInstanceById(nvmlDevice_t h, unsigned int id, nvmlGpuInstance_t *gi) {
    cJSON *root, *gpu, *model;
    nvmlReturn_t r = mig_gpu(h, &root, &gpu, &model);
    if (r != NVML_SUCCESS) return r;
    cJSON *inst = id < MAX_GI ? instance_by_gi(gpu, id) : NULL;
    cJSON_Delete(root);
    if (!inst) return NVML_ERROR_NOT_FOUND;
    *gi = &gi_handles[h->gpu][id];
    return NVML_SUCCESS;
}

/* The GPU instance a handle stands for; *root must be freed on success. */
static nvmlReturn_t gi_lookup(fake_gi *gi, cJSON **root, cJSON **gpu, cJSON **model,
                              cJSON **inst) {
    if (!gi) return NVML_ERROR_INVALID_ARGUMENT;
    nvmlReturn_t r = mig_gpu(&handles[gi->gpu][0], root, gpu, model);
    if (r != NVML_SUCCESS) return r;
    *inst = instance_by_gi(*gpu, gi->id);
    if (!*inst) { cJSON_Delete(*root); return NVML_ERROR_INVALID_ARGUMENT; }
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlGpuInstanceGetInfo(nvmlGpuInstance_t gi, nvmlGpuInstanceInfo_t *info) {
    cJSON *root, *gpu, *model, *inst;
    nvmlReturn_t r = gi_lookup(gi, &root, &gpu, &model, &inst);
    if (r != NVML_SUCCESS) return r;
    occupied(gpu, model);
    cJSON *p = profile_named(model, cJSON_GetStringValue(cJSON_GetObjectItem(inst, "profile")));
    info->device = &handles[gi->gpu][0];
    info->id = gi->id;
    info->profileId = p ? (unsigned int)number(p, "id", 0) : 0;
    info->placement.start = (unsigned int)number(inst, "start", 0);
    info->placement.size = p ? placement_size(p, info->placement.start) : 0;
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlGpuInstanceDestroy(nvmlGpuInstance_t gi) {
    cJSON *root, *gpu, *model, *inst;
    nvmlReturn_t r = gi_lookup(gi, &root, &gpu, &model, &inst);
    if (r != NVML_SUCCESS) return r;
    if (has_ci(inst)) { cJSON_Delete(root); return NVML_ERROR_IN_USE; }
    cJSON *list = cJSON_GetObjectItem(gpu, "instances"), *i;
    int k = 0;
    cJSON_ArrayForEach(i, list) {
        if (i == inst) break;
        k++;
    }
    cJSON_DeleteItemFromArray(list, k);
    return save(root);
}

/* The GPU instance's slice count -> its compute instance profiles (indexes). */
static int ci_allowed(cJSON *gi_profile, unsigned int ci_profile) {
    char key[8];
    snprintf(key, sizeof key, "%d", (int)number(gi_profile, "slices", 0));
    cJSON *c;
    cJSON_ArrayForEach(c, cJSON_GetObjectItem(cJSON_GetObjectItem(models_file(), "compute_profiles"), key))
        if ((unsigned int)c->valuedouble == ci_profile) return 1;
    return 0;
}

static unsigned int ci_slices(unsigned int ci_profile) {
    cJSON *s = cJSON_GetArrayItem(cJSON_GetObjectItem(models_file(), "compute_slices"), (int)ci_profile);
    return s ? (unsigned int)s->valuedouble : 0;
}

nvmlReturn_t nvmlGpuInstanceGetComputeInstanceProfileInfoV(
        nvmlGpuInstance_t gi, unsigned int profile, unsigned int engProfile,
        nvmlComputeInstanceProfileInfo_v2_t *info) {
    if (!info || engProfile != 0) return NVML_ERROR_INVALID_ARGUMENT;
    if (info->version != CI_PROFILE_INFO_V2) return NVML_ERROR_ARGUMENT_VERSION_MISMATCH;
    cJSON *root, *gpu, *model, *inst;
    nvmlReturn_t r = gi_lookup(gi, &root, &gpu, &model, &inst);
    if (r != NVML_SUCCESS) return r;
    cJSON *p = profile_named(model, cJSON_GetStringValue(cJSON_GetObjectItem(inst, "profile")));
    if (!p || !ci_allowed(p, profile)) { cJSON_Delete(root); return NVML_ERROR_NOT_SUPPORTED; }
    unsigned int gi_slices = (unsigned int)number(p, "slices", 1), slices = ci_slices(profile);
    info->id = profile;
    info->sliceCount = slices;
    info->instanceCount = gi_slices / slices;
    info->multiprocessorCount = (unsigned int)number(p, "multiprocessors", 0) / gi_slices * slices;
    info->sharedCopyEngineCount = (unsigned int)number(p, "copy_engines", 0);
    info->sharedDecoderCount = (unsigned int)number(p, "decoders", 0);
    info->sharedEncoderCount = 0;
    info->sharedJpegCount = (unsigned int)number(p, "jpeg", 0);
    info->sharedOfaCount = (unsigned int)number(p, "ofa", 0);
    const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(p, "name"));
    if (slices == gi_slices) snprintf(info->name, sizeof info->name, "MIG %s", name);
    else snprintf(info->name, sizeof info->name, "MIG %uc.%s", slices, name);
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlGpuInstanceCreateComputeInstance(nvmlGpuInstance_t gi, unsigned int profileId,
                                                  nvmlComputeInstance_t *ci) {
    if (!ci) return NVML_ERROR_INVALID_ARGUMENT;
    cJSON *root, *gpu, *model, *inst;
    nvmlReturn_t r = gi_lookup(gi, &root, &gpu, &model, &inst);
    if (r != NVML_SUCCESS) return r;
    cJSON *p = profile_named(model, cJSON_GetStringValue(cJSON_GetObjectItem(inst, "profile")));
    if (!p || !ci_allowed(p, profileId)) { cJSON_Delete(root); return NVML_ERROR_NOT_SUPPORTED; }
    if (has_ci(inst)) { cJSON_Delete(root); return NVML_ERROR_INSUFFICIENT_RESOURCES; }
    char uuid[64];
    new_uuid(root, gpu, uuid, sizeof uuid);
    cJSON_DeleteItemFromObject(inst, "ci");
    cJSON_AddNumberToObject(inst, "ci", 0);
    cJSON_DeleteItemFromObject(inst, "ci_profile");
    cJSON_AddNumberToObject(inst, "ci_profile", profileId);
    cJSON_DeleteItemFromObject(inst, "uuid");
    cJSON_AddStringToObject(inst, "uuid", uuid);
    *ci = &ci_handles[gi->gpu][gi->id];
    return save(root);
}

nvmlReturn_t nvmlGpuInstanceGetComputeInstances(nvmlGpuInstance_t gi, unsigned int profileId,
                                                nvmlComputeInstance_t *cis,
                                                unsigned int *count) {
    if (!cis || !count) return NVML_ERROR_INVALID_ARGUMENT;
    cJSON *root, *gpu, *model, *inst;
    nvmlReturn_t r = gi_lookup(gi, &root, &gpu, &model, &inst);
    if (r != NVML_SUCCESS) return r;
    cJSON *p = profile_named(model, cJSON_GetStringValue(cJSON_GetObjectItem(inst, "profile")));
    unsigned int mine = (unsigned int)number(inst, "ci_profile", -1);
    if (mine == (unsigned int)-1 && p) { /* older files: a compute instance of the whole GI */
        for (unsigned int k = 0; k < 5; k++)
            if (ci_slices(k) == (unsigned int)number(p, "slices", 0)) mine = k;
    }
    *count = 0;
    if (has_ci(inst) && mine == profileId) { cis[0] = &ci_handles[gi->gpu][gi->id]; *count = 1; }
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlComputeInstanceGetInfo_v2(nvmlComputeInstance_t ci,
                                           nvmlComputeInstanceInfo_t *info) {
    if (!ci) return NVML_ERROR_INVALID_ARGUMENT;
    cJSON *root, *gpu, *model, *inst;
    nvmlReturn_t r = gi_lookup(&gi_handles[ci->gpu][ci->gi], &root, &gpu, &model, &inst);
    if (r != NVML_SUCCESS) return r;
    if (!has_ci(inst)) { cJSON_Delete(root); return NVML_ERROR_INVALID_ARGUMENT; }
    info->device = &handles[ci->gpu][0];
    info->gpuInstance = &gi_handles[ci->gpu][ci->gi];
    info->id = (unsigned int)number(inst, "ci", 0);
    info->profileId = (unsigned int)number(inst, "ci_profile", 0);
    info->placement.start = 0;
    info->placement.size = ci_slices(info->profileId);
    cJSON_Delete(root);
    return NVML_SUCCESS;
}

nvmlReturn_t nvmlComputeInstanceDestroy(nvmlComputeInstance_t ci) {
    if (!ci) return NVML_ERROR_INVALID_ARGUMENT;
    cJSON *root, *gpu, *model, *inst;
    nvmlReturn_t r = gi_lookup(&gi_handles[ci->gpu][ci->gi], &root, &gpu, &model, &inst);
    if (r != NVML_SUCCESS) return r;
    if (!has_ci(inst)) { cJSON_Delete(root); return NVML_ERROR_INVALID_ARGUMENT; }
    if (cJSON_GetArraySize(cJSON_GetObjectItem(inst, "processes")) > 0) {
        cJSON_Delete(root); return NVML_ERROR_IN_USE;
    }
    cJSON_DeleteItemFromObject(inst, "ci");
    cJSON_AddNullToObject(inst, "ci");
    cJSON_DeleteItemFromObject(inst, "ci_profile");
    cJSON_DeleteItemFromObject(inst, "uuid");
    return save(root);
}

/* Anything that keeps the GPU from changing mode: processes on it or its instances, a
 * graphics client, or a client NVML cannot name ("held"). */
static int gpu_busy(cJSON *gpu) {
    cJSON *i;
    if (cJSON_IsTrue(cJSON_GetObjectItem(gpu, "held"))) return 1;
    if (cJSON_GetArraySize(cJSON_GetObjectItem(gpu, "processes")) > 0) return 1;
    if (cJSON_GetArraySize(cJSON_GetObjectItem(gpu, "graphics")) > 0) return 1;
    cJSON_ArrayForEach(i, cJSON_GetObjectItem(gpu, "instances"))
        if (cJSON_GetArraySize(cJSON_GetObjectItem(i, "processes")) > 0) return 1;
    return 0;
}

static void set_bool(cJSON *obj, const char *key, int value) {
    cJSON_DeleteItemFromObject(obj, key);
    cJSON_AddBoolToObject(obj, key, value);
}

nvmlReturn_t nvmlDeviceSetMigMode(nvmlDevice_t h, unsigned int mode, nvmlReturn_t *status) {
    if (!status || mode > 1) return NVML_ERROR_INVALID_ARGUMENT;
    cJSON *root, *gpu, *model;
    nvmlReturn_t r = mig_gpu(h, &root, &gpu, &model);
    if (r != NVML_SUCCESS) return r;
    set_bool(gpu, "mig_pending", (int)mode);
    if ((unsigned int)mig_on(gpu) == mode) *status = NVML_SUCCESS;
    else if (gpu_busy(gpu) || cJSON_GetArraySize(cJSON_GetObjectItem(gpu, "instances")) > 0)
        *status = NVML_ERROR_IN_USE;
    else if (cJSON_IsTrue(cJSON_GetObjectItem(gpu, "mig_reset_required")))
        *status = NVML_ERROR_RESET_REQUIRED;
    else {
        set_bool(gpu, "mig", (int)mode);
        *status = NVML_SUCCESS;
    }
    return save(root);
}
