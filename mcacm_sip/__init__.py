"""mcacm-sip: TS 23.280 clause 10.17 administrative configuration management over SIP."""

__version__ = "0.1.0"
