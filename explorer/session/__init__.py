"""Working state of the app that needs no Qt: the run session, the comparison session, the run status.

The desktop app observes these objects through thin QObject adapters
(:mod:`explorer.ui.config_model` and :mod:`explorer.ui.session` over one
:class:`~explorer.session.run.RunSession`, :mod:`explorer.ui.compare_model` over the
comparison); scripts and tests may drive them directly.
"""
