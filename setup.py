"""The compiled parts: mcacm_sip.sip._cparse (the SIP header splitting, docs/sip-layer.md),
mcacm_sip.cli._logline (the text of a log line, mcacm_sip/cli/logs.py) and mcacm_sip.acm._c14n
(the canonical text of a received user profile, mcacm_sip/acm/codec.py).

Optional: without a C compiler or Python's headers the build warns, the package installs anyway
and message.py, logs.py and codec.py run their pure-Python code.  Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("mcacm_sip.sip._cparse", ["mcacm_sip/sip/_cparse.c"], optional=True,
              extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]),
    Extension("mcacm_sip.cli._logline", ["mcacm_sip/cli/_logline.c"], optional=True,
              extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]),
    Extension("mcacm_sip.acm._c14n", ["mcacm_sip/acm/_c14n.c"], optional=True,
              extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]),
])
