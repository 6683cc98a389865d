"""The one compiled part: mcacm_sip.sip._cparse (the SIP header splitting, docs/sip-layer.md).

Optional: without a C compiler or Python's headers the build warns, the package installs anyway
and message.py runs its pure-Python code.  Everything else is in pyproject.toml.
"""

from setuptools import Extension, setup

setup(ext_modules=[
    Extension("mcacm_sip.sip._cparse", ["mcacm_sip/sip/_cparse.c"], optional=True,
              extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]),
])
