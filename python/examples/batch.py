"""exec_batch: many reads in parallel (read_only=True) or an atomic multi-step write."""

from _common import client

with client() as fs:
    sb = fs.sandboxes.create(name="batch")
    try:
        sb.fs.write_files({f"/home/user/src/m{i}.py": f"def f{i}():\n    return {i}\n" for i in range(5)})

        # Parallel under the shared lock; results keep the input order.
        reads = sb.exec_batch(
            [{"id": "count", "script": "ls /home/user/src | wc -l"},
             {"id": "grep", "script": "grep -l 'return 3' /home/user/src/*.py"},
             {"id": "size", "script": "du -sb /home/user/src | cut -f1"}],
            read_only=True,
        )
        for r in reads:
            print(r.id, r.exit_code, r.stdout.strip())

        # Sequential in one bash process: the scripts share cwd and variables; one commit.
        steps = sb.exec_batch(
            ["cd /home/user/src && N=$(ls | wc -l)", "echo $N files in $(pwd) > SUMMARY", "cat SUMMARY"],
            stop_on_error=True,
        )
        print(steps[-1].stdout, end="")
    finally:
        sb.delete()
