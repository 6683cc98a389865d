"""The compiled parts: mcacm_sip.sip._cparse (the SIP header splitting, docs/sip-layer.md) and
mcacm_sip.cli._logline (the text of a log line, mcacm_sip/cli/logs.py).

Optional: without a C compiler or Python's headers the build warns, the package installs anyway
and message.py and logs.py run their pure-Python code.  Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("mcacm_sip.sip._cparse", ["mcacm_sip/sip/_cparse.c"], optional=True,
              extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]),
    Extension("mcacm_sip.cli._logline", ["mcacm_sip/cli/_logline.c"], optional=True,
              extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]),
])
