"""Working state of the app that needs no Qt: the comparison session and the run status.

The desktop app observes these objects through thin QObject adapters
(:mod:`explorer.ui.compare_model`); scripts and tests may drive them directly.
"""
