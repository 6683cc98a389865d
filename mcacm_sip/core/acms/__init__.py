"""The ACM server (ACMS) procedure core: sans-I/O, one instance per MC system.

It plays the primary role for requests of its own ACMCs and the partner role for requests from
peer ACMSs (TS 23.280 10.17.7.2 steps 1-10, 10.17.5 add/remove user configuration, 10.17.3.1
pending requests, 10.17.3.2 automatic handling).  ``handle(event)`` returns actions
(:mod:`mcacm_sip.core.events` documents their order); ``get_timer()`` is the next deadline.

The package, one module per responsibility, each a mixin class building on the one before (a
method a lower module needs from a higher one is declared there as a seam that raises
``NotImplementedError``):

- ``records``: the records in memory, their keys and indexes, the store actions, the table-driven
  state move, the query methods;
- ``outbox``: sends, delivery outcomes, retry with back-off, local vs remote failures, the tick;
- ``intake``: what both roles check on an incoming flow (quota, repeats, refusals, matching);
- ``routing``: who decides, FA routing and holder pick, deliver-or-queue, logon/notify/download;
- ``partner`` / ``primary``: the two roles' steps of 10.17.7.2;
- ``facade``: :class:`AcmsCore` (``handle``, ``start``, ``restore``, the timer expiry).
"""

from mcacm_sip.core.acms.facade import AcmsCore
from mcacm_sip.core.acms.outbox import LOCAL_ERROR, PEER_REFUSED
from mcacm_sip.core.events import transient

__all__ = ["LOCAL_ERROR", "PEER_REFUSED", "AcmsCore", "transient"]
