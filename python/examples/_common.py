"""Shared set-up of the examples: server URL and secret from the environment."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run from the source tree without installing

from sqlfs import Client  # noqa: E402


def client(sub: str = "example-agent") -> Client:
    url = os.environ.get("SQLFS_URL", "http://127.0.0.1:8080")
    secret = os.environ.get("AUTH_SECRET")
    if not secret:
        sys.exit("set AUTH_SECRET (and SQLFS_URL, default http://127.0.0.1:8080)")
    return Client(base_url=url, auth_secret=secret, sub=sub)
