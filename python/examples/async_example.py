"""AsyncClient: several sandboxes driven concurrently."""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from sqlfs import AsyncClient  # noqa: E402


async def work(fs: AsyncClient, n: int) -> str:
    sb = await fs.sandboxes.create(name=f"async-{n}")
    try:
        await sb.fs.write("/home/user/n.txt", str(n))
        r = await sb.exec("echo sandbox $(cat n.txt) says hi")
        async for ev in sb.exec_stream("echo streamed"):
            if ev.type == "exit":
                assert ev.exit_code == 0
        return r.stdout.strip()
    finally:
        await sb.delete()


async def main() -> None:
    secret = os.environ.get("AUTH_SECRET")
    if not secret:
        sys.exit("set AUTH_SECRET (and SQLFS_URL)")
    url = os.environ.get("SQLFS_URL", "http://127.0.0.1:8080")
    async with AsyncClient(base_url=url, auth_secret=secret, sub="example-async") as fs:
        for line in await asyncio.gather(*(work(fs, n) for n in range(3))):
            print(line)


asyncio.run(main())
