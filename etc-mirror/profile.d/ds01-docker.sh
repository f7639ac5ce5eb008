# /etc/profile.d/ds01-docker.sh: the docker CLI, the SDKs, VS Code and devcontainer talk to
# ds01's Docker socket, which lets each user work with their own containers, as themselves.
# Root and members of the docker group keep Docker's own socket.
if [ "$(id -u)" != 0 ] && [ -S /run/ds01/docker.sock ] && [ -z "${DOCKER_HOST:-}" ]; then
  case " $(id -Gn) " in
    *" docker "*) ;;
    *) export DOCKER_HOST=unix:///run/ds01/docker.sock ;;
  esac
fi
