"""The error classes and what provokes them."""

from _common import client

import sqlfs

with client() as fs:
    sb = fs.sandboxes.create(name="errors")
    try:
        try:
            sb.fs.read("/home/user/missing.txt")
        except sqlfs.NotFoundError as e:
            print("404", e.code, e.status)
        try:
            sb.exec("sleep 10", timeout_ms=500)
        except sqlfs.ExecTimeoutError as e:
            print("408 after", e.duration_ms, "ms; partial stdout:", repr(e.stdout))
        try:
            sb.exec("touch /home/user/x", read_only=True)
        except sqlfs.ReadOnlyViolationError as e:
            print("422", e.code)
        try:
            sb.fs.mkdir("/home/user")
        except sqlfs.ConflictError as e:
            print("409", e.code)
        r = sb.exec("exit 3")  # a failing script is a result, not an exception
        print("exit", r.exit_code, "ok", r.ok)
    finally:
        sb.delete()
