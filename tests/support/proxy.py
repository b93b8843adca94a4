"""The cuttable TCP proxy lives in wattrail/chaos/proxy.py (the chaos runner uses it too)."""

from wattrail.chaos.proxy import TcpProxy

__all__ = ["TcpProxy"]
