"""Create a sandbox, run bash, read and write files, clean up.

    SQLFS_URL=http://127.0.0.1:8080 AUTH_SECRET=... python3 python/examples/quickstart.py
"""

from _common import client

with client() as fs:
    sb = fs.sandboxes.create(name="quickstart")
    try:
        r = sb.exec("echo hello && uname -s && ls /home/user")
        print(r.stdout, end="")
        print("exit", r.exit_code, "ok", r.ok, "in", r.duration_ms, "ms")

        sb.fs.write("/home/user/notes.txt", "first line\n")
        sb.exec("echo second line >> /home/user/notes.txt")
        print(sb.fs.read_text("/home/user/notes.txt"), end="")

        # cwd persists between execs; shell variables do not.
        sb.exec("mkdir -p /home/user/work && cd /home/user/work")
        print("cwd now:", sb.exec("pwd").stdout.strip())

        for entry in sb.fs.tree(prefix="/home/user", depth=2):
            print(f"{entry.kind:4} {entry.size:6} {entry.path}")
    finally:
        sb.delete()
