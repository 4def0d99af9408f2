"""The names a run configuration chooses from (processes, schedules, discretizations, final steps).

Kept apart from the modules that compute with them, which need torch, so that validating a
configuration and building the CLI's parser import nothing heavy.
"""
PROCESSES = {"vp": ("vp", "vp"), "ve": ("ve", "none"), "edm": ("linear", "none")}  # process -> (σ(t), s(t))
SCHEDULES = ("vp", "ve", "linear")
SCALINGS = ("vp", "none")
DISCRETIZATIONS = ("vp", "ve", "iddpm", "edm", "logsnr", "time-uniform", "time-quadratic")
FINALS = ("zero", "sigma_min", "denoise")
