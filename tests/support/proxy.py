"""The cuttable TCP proxy lives in wattrail/netproxy.py (the chaos runner uses it too)."""

from wattrail.netproxy import TcpProxy

__all__ = ["TcpProxy"]
