"""The names a run configuration chooses from (processes, schedules, discretizations, final steps).

Kept apart from the modules that compute with them, which need torch, so that validating a
configuration and building the CLI's parser import nothing heavy.
"""
# process -> (σ(t), s(t)); rf is rectified flow (explorer.core.flow)
PROCESSES = {"vp": ("vp", "vp"), "ve": ("ve", "none"), "edm": ("linear", "none"), "rf": ("rf", "rf")}
SCHEDULES = ("vp", "ve", "linear", "rf")
SCALINGS = ("vp", "none", "rf")
DISCRETIZATIONS = ("vp", "ve", "iddpm", "edm", "logsnr", "time-uniform", "time-quadratic")
FINALS = ("zero", "sigma_min", "denoise")
