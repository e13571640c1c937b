"""Upload a project as an archive, work on it, download the result as tar.gz."""

import io
import tarfile

from _common import client

buf = io.BytesIO()
with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    for name, text in {"app/main.sh": "echo building\n", "app/README": "demo\n"}.items():
        data = text.encode()
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
buf.seek(0)

with client() as fs:
    sb = fs.sandboxes.create(name="ingest")
    try:
        res = sb.ingest_archive(buf, base_path="/home/user/project")
        print("ingested", res.file_count, "files")
        sb.ingest_files({"assets/logo.bin": b"\x89PNG\r\n"}, base_path="/home/user/project")
        print(sb.exec("cd /home/user/project && bash app/main.sh > build.log && ls -R").stdout)

        blob = sb.export(base_path="/home/user/project")
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            print(sorted(m.name for m in tar.getmembers() if m.isfile()))

        with open("/tmp/sqlfs-export.tar.gz", "wb") as out:
            for chunk in sb.export_stream(base_path="/home/user/project"):
                out.write(chunk)
        print("wrote /tmp/sqlfs-export.tar.gz")
    finally:
        sb.delete()
