"""Real work runs in the jail, under its seccomp allowlist, /proc masks and root-owned /: the
tools an agent uses every day (git, a C toolchain, make, python venvs and pip, node, sqlite3, a
loopback HTTP server, archivers, coreutils and procps). Each test runs one exec of ordinary
commands and checks what they produced, so a syscall the filter wrongly refuses shows up as a
failing tool."""
import pytest


@pytest.fixture(scope="module")
def box(api):
    r = api.post("/v1/sandboxes", json={"name": "work", "python": True, "javascript": True})
    assert r.status_code == 201, r.text
    sid = r.json()["id"]
    yield sid
    api.delete(f"/v1/sandboxes/{sid}")


def work(api, sid, script):
    """Runs script with `set -e`; returns its stdout, failing the test with its stderr."""
    r = api.post(f"/v1/sandboxes/{sid}/exec-sync", timeout=300,
                 json={"script": "set -e\n" + script, "timeoutMs": 240000})
    assert r.status_code == 200, r.text
    res = r.json()
    assert res["exitCode"] == 0, res
    return res["stdout"]


def test_git(api, box):
    out = work(api, box, """
        git init -q repo && cd repo
        git config user.email a@example.com && git config user.name Agent
        echo one > a.txt && git add a.txt && git commit -qm first
        echo two >> a.txt && git commit -qam second
        git log --format=%s
        git status --porcelain | wc -l
        git diff HEAD~1 --stat | tail -1
        git gc -q && git fsck --no-progress 2>&1 && echo fsck-ok
    """)
    assert out.splitlines() == ["second", "first", "0",
                                " 1 file changed, 1 insertion(+)", "fsck-ok"], out


def test_gcc_compiles_and_runs_threaded_c(api, box):
    out = work(api, box, r"""
        mkdir -p c && cd c
        cat > hello.c <<'EOF'
#include <stdio.h>
int main(void) { printf("hello %d\n", 6 * 7); return 0; }
EOF
        cat > threads.c <<'EOF'
#include <pthread.h>
#include <stdio.h>
static long part[4];
static void *sum(void *arg) {
    long k = (long)arg;
    for (long i = k * 250; i < (k + 1) * 250; i++) part[k] += i;
    return NULL;
}
int main(void) {
    pthread_t t[4];
    for (long k = 0; k < 4; k++) pthread_create(&t[k], NULL, sum, (void *)k);
    long total = 0;
    for (int k = 0; k < 4; k++) { pthread_join(t[k], NULL); total += part[k]; }
    printf("threads %ld\n", total);
    return 0;
}
EOF
        gcc -O2 -Wall -o hello hello.c && ./hello
        gcc -O2 -Wall -pthread -o threads threads.c && ./threads
        cc -static -o hello-static hello.c 2>/dev/null && ./hello-static || echo no-static
    """)
    lines = out.splitlines()
    assert lines[:2] == ["hello 42", "threads 499500"], out
    assert lines[2] in ("hello 42", "no-static"), out


def test_make(api, box):
    out = work(api, box, r"""
        mkdir -p mk && cd mk
        printf 'int add(int a, int b) { return a + b; }\n' > add.c
        printf '#include <stdio.h>\nint add(int, int);\nint main(void) { printf("%%d\\n", add(2, 3)); return 0; }\n' > main.c
        printf 'app: main.o add.o\n\t$(CC) -o $@ $^\n%%.o: %%.c\n\t$(CC) -c -o $@ $<\nclean:\n\trm -f app *.o\n.PHONY: clean\n' > Makefile
        make -s -j2 && ./app
        make -q app && echo up-to-date
        make -s clean && ls *.o 2>/dev/null | wc -l
    """)
    assert out.splitlines() == ["5", "up-to-date", "0"], out


def test_python_venv_and_pip(api, box):
    out = work(api, box, r"""
        python3 -m venv /tmp/v && /tmp/v/bin/pip --version | cut -d' ' -f1
        /tmp/v/bin/python -c 'import sys; print(sys.prefix != sys.base_prefix)'
        # a local package, no index: the system's setuptools and wheel build it
        python3 -m venv --system-site-packages /tmp/vs
        mkdir -p pkg/hello && printf 'def hi():\n    return "hi from hello"\n' > pkg/hello/__init__.py
        printf '[build-system]\nrequires = ["setuptools"]\nbuild-backend = "setuptools.build_meta"\n[project]\nname = "hello"\nversion = "0.1"\n' > pkg/pyproject.toml
        /tmp/vs/bin/pip install -q --no-index --no-build-isolation ./pkg 2>&1 | grep -v -i warning || true
        cd / && /tmp/vs/bin/python -c 'import hello; print(hello.hi())'
        /tmp/vs/bin/pip show hello | grep -i '^version'
        python3 -c 'import multiprocessing as m; print(sum(m.Pool(2).map(abs, [-1, -2, 3])))'
    """)
    assert out.splitlines() == ["pip", "True", "hi from hello", "Version: 0.1", "6"], out


def test_node_worker_thread_and_fs(api, box):
    out = work(api, box, r"""
        cd /tmp && node -e '
const { Worker } = require("worker_threads");
const fs = require("fs");
const w = new Worker(`
  const { parentPort } = require("worker_threads");
  const fs = require("fs");
  let s = 0; for (let i = 0; i < 1000; i++) s += i;
  fs.writeFileSync("/tmp/worker.txt", String(s));
  parentPort.postMessage(s);
`, { eval: true });
w.on("message", (s) => {
  fs.promises.readFile("/tmp/worker.txt", "utf8").then((t) => console.log("worker", s, t));
});
'
        js-exec -c 'require("child_process").exec("echo child", (e, o) => console.log(o.trim()))'
    """)
    assert out.splitlines() == ["worker 499500 499500", "child"], out


def test_sqlite3(api, box):
    out = work(api, box, """
        cd /tmp
        sqlite3 t.db 'pragma journal_mode=wal; create table t(x integer); insert into t values (1), (2), (39);'
        sqlite3 t.db 'select sum(x) from t;'
        python3 -c 'import sqlite3; print(sqlite3.connect("/tmp/t.db").execute("select count(*) from t").fetchone()[0])'
    """)
    assert out.splitlines() == ["wal", "42", "3"], out


def test_http_server_on_loopback(api, box):
    out = work(api, box, """
        mkdir -p /tmp/www && echo served > /tmp/www/index.txt
        python3 -m http.server 8765 --bind 127.0.0.1 --directory /tmp/www >/dev/null 2>&1 &
        for i in $(seq 100); do curl -sf http://127.0.0.1:8765/index.txt && break; sleep 0.1; done
        curl -s -o /dev/null -w '%{http_code}\\n' http://127.0.0.1:8765/missing
        kill %1
    """)
    assert out.splitlines() == ["served", "404"], out


def test_archivers(api, box):
    out = work(api, box, """
        mkdir -p /tmp/ar/src && cd /tmp/ar && seq 1 20000 > src/numbers && cp src/numbers src/copy
        tar czf a.tgz src && tar cJf a.txz src && tar --zstd -cf a.tzst src
        gzip -k src/numbers && xz -T2 -k src/copy && zstd -q -T2 src/numbers -o n.zst
        mkdir x && tar xzf a.tgz -C x && tar xJf a.txz -C x && tar --zstd -xf a.tzst -C x
        cmp x/src/numbers src/numbers && cmp x/src/copy src/copy
        gunzip -c src/numbers.gz | wc -l; xz -dc src/copy.xz | tail -1; zstd -dc n.zst | head -1
    """)
    assert out.splitlines() == ["20000", "20000", "1"], out


def test_coreutils_and_process_tools(api, box):
    out = work(api, box, r"""
        cd /tmp
        mkdir -p tree/a/b && touch tree/a/1.txt tree/a/b/2.txt tree/3.log
        find tree -name '*.txt' -print0 | xargs -0 -n1 basename | sort
        seq 200000 | sort -rn --parallel=4 -S 4M | head -1
        timeout 0.2 sleep 5 || echo "timeout $?"
        flock /tmp/lock -c 'echo locked'
        mkfifo /tmp/fifo && { echo through-fifo > /tmp/fifo & } && cat /tmp/fifo && wait
        echo teed | tee /tmp/tee.txt >/dev/null && cat /tmp/tee.txt
        date -u -d @0 +%Y-%m-%d
        ps -o args= -p $$ | cut -d" " -f1; ps -e | grep -c bash
        top -bn1 | head -1 | cut -d' ' -f1
        nproc >/dev/null && uptime >/dev/null && free >/dev/null && echo procps-ok
    """)
    assert out.splitlines() == ["1.txt", "2.txt", "200000", "timeout 124", "locked",
                                "through-fifo", "teed", "1970-01-01", "bash", "1", "top",
                                "procps-ok"], out
