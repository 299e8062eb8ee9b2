import os

# The CUDA simulator must be chosen before anything imports numba (ARCHITECTURE.md, "GPU without a GPU").
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

from hypothesis import HealthCheck, settings  # noqa: E402

# Examples per property: "default" keeps the whole suite to a few minutes on 2 cores; "slow" searches more.
settings.register_profile("default", max_examples=30, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("slow", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
