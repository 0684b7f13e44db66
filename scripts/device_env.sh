# Source on a bare GPU machine with no package index: `source scripts/device_env.sh`.
# Installs the wheels carried in .whl/ (pure-Python deps the machine's image lacks) into /tmp/site, and points
# FACELIFT_GSPLAT_SO at a gsplat_cuda.so carried in .gl/ (built once by gsplat's JIT; skips its ~80 s build).
# The device image has no imageio-ffmpeg (videos of the rig chain): carry imageio-ffmpeg 0.4.9's wheel (27 MB; 0.8.1's
# is 68 MB, over the 64 MiB a call carries).
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || return 1
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TORCH_CUDA_ARCH_LIST=9.0
if [ -f .gl/gsplat_cuda.so ]; then export FACELIFT_GSPLAT_SO="$PWD/.gl/gsplat_cuda.so"; fi
