"""Stream a script's output live with exec_stream (Server-Sent Events)."""

from _common import client

with client() as fs:
    sb = fs.sandboxes.create(name="streaming")
    try:
        for event in sb.exec_stream("for i in 1 2 3; do echo $i; sleep 1; done; echo done >&2"):
            if event.type == "stdout":
                print(event.data, end="", flush=True)
            elif event.type == "stderr":
                print("[stderr]", event.data, end="", flush=True)
            elif event.type == "error":
                print("[error]", event.code, event.data)
            elif event.type == "exit":
                print(f"exit={event.exit_code} in {event.duration_ms}ms")
    finally:
        sb.delete()
