# The warm interpreter's child, inside the caller's jail: makes this forked interpreter what
# `python3 ARGS` started there would have been, or answers None when it cannot (the request then
# runs cold). Runs as the sandbox user, with the caller's environment, descriptors and working
# directory already in place (zygote/pyzygote.c); only the caller's program runs after it.
# Compiled once in the zygote, before any sandbox exists; it holds nothing of any call.
import codecs
import importlib.util
import io
import os
import signal
import site
import stat
import sys
import types

# sys.path as the zygote's start made it (the standard library, then the system's site
# directories and what their .pth files added), and where the site part begins.
_BASE_PATH = list(sys.path)
_SITE_DIRS = set(site.getsitepackages())
_SITE_START = next((i for i, p in enumerate(_BASE_PATH) if p in _SITE_DIRS), len(_BASE_PATH))
# The zygote's standard streams: on pipes, as an exec's are; a call whose descriptors are
# pipes or sockets too keeps them (they are what python3 would have made), others get their own.
_STDIO = (sys.stdin, sys.stdout, sys.stderr)
# The zygote's user site (the jail's HOME): a call with the same HOME and no user site directory
# needs none of site's work, unless a usercustomize module is on the system's path.
_USER_BASE, _USER_SITE = site.getuserbase(), site.getusersitepackages()
_SYS_USERCUSTOMIZE = importlib.util.find_spec("usercustomize") is not None
_ENCODING, _ERRORS = sys.stdout.encoding, sys.stdout.errors
_TZ = os.environ.get("TZ")
_MAIN_KEYS = {k: v for k, v in vars(sys.modules["__main__"]).items()
              if k in ("__loader__", "__builtins__")}

# Variables read at start-up that a warm start reproduces; any other PYTHON* variable with a
# value makes the call cold (PYTHONSTARTUP and PYTHONBREAKPOINT are read later, by the program).
_HANDLED_ENV = {"PYTHONPATH", "PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE", "PYTHONNOUSERSITE",
                "PYTHONSAFEPATH", "PYTHONUSERBASE", "PYTHONWARNINGS", "PYTHONIOENCODING",
                "PYTHONBREAKPOINT", "PYTHONSTARTUP"}
_FLAG_OPTIONS = set("BEIPqRsu")


def _parse(args):
    """python3's command line, as far as a warm start can honour it: (options, mode, target,
    rest) or None. mode: "c" (target = the command), "m" (the module), "file" (the path),
    "stdin"."""
    opts = {"W": []}
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--":
            i += 1
            break
        if not a.startswith("-") or a == "-":
            break
        if a.startswith("--"):
            return None
        j = 1
        while j < len(a):
            ch = a[j]
            if ch in "cmW":
                if j + 1 < len(a):
                    val = a[j + 1:]
                elif i + 1 < len(args):
                    i += 1
                    val = args[i]
                else:
                    return None
                if ch == "W":
                    opts["W"].append(val)
                    break
                return opts, ch, val, args[i + 1:]
            if ch not in _FLAG_OPTIONS:
                return None
            opts[ch] = True
            j += 1
        i += 1
    if i < len(args) and args[i] != "-":
        return opts, "file", args[i], args[i + 1:]
    return opts, "stdin", "-" if i < len(args) else "", args[i + 1:]


def _env(name, use_env):
    v = os.environ.get(name) if use_env else None
    return v or None


def _stdio(fd, write, name, encoding, errors, unbuffered, kind):
    """kind (zygote/pyzygote.c): 0 closed, 1 a pipe or socket (the zygote's stream serves),
    2 anything else (a file, a terminal: a stream of its own, as python3 would make it)."""
    if kind == 0:
        return None
    if kind == 1 and not unbuffered and encoding == _ENCODING and errors == _STDIO[fd].errors:
        return _STDIO[fd]
    buffering = 0 if unbuffered and write else -1
    buf = io.open(fd, "wb" if write else "rb", buffering, closefd=False)
    raw = buf if buffering == 0 else buf.raw
    raw.name = name
    line_buffering = not unbuffered and (raw.isatty() or fd == 2)
    stream = io.TextIOWrapper(buf, encoding, errors, "\n", line_buffering, unbuffered)
    stream.mode = "w" if write else "r"
    return stream


def _path0(mode, target):
    if mode == "m":
        return os.getcwd()
    if mode != "file":
        return ""
    try:
        target = os.path.realpath(target)
    except OSError:
        pass
    cut = target.rfind("/")
    if cut < 0:
        return ""
    return target[:cut] if cut > 0 else "/"


def prepare(raw_args, sigignored, zy, pyvars, stdio, user_site_dir):
    """Returns (mode, target, unbuffered) once this interpreter is the caller's python3, or
    None for a cold start (nothing has then been changed that the caller could see). os.environ
    is already the caller's. What pyzygote.c found out cheaply: pyvars, the PYTHON* variables with a value; stdio, each
    standard descriptor's kind (_stdio); user_site_dir, whether the user site directory of the
    caller's HOME exists."""
    args = [os.fsdecode(a) for a in raw_args]
    parsed = _parse(args)
    if parsed is None:
        return None
    opts, mode, target, rest = parsed
    isolated = "I" in opts
    use_env = not (isolated or "E" in opts)
    if use_env and any(k not in _HANDLED_ENV for k in pyvars):
        return None
    if mode == "c" and any("\udc80" <= ch <= "\udcff" for ch in target):
        return None
    ioenc = _env("PYTHONIOENCODING", use_env)
    encoding, errors = _ENCODING, _ERRORS
    if ioenc:
        enc, _, err = ioenc.partition(":")
        try:
            if enc:
                codecs.lookup(enc)
                encoding = enc
            if err:
                codecs.lookup_error(err)
                errors = err
        except LookupError:
            return None

    flags = {
        "dont_write_bytecode": int("B" in opts or bool(_env("PYTHONDONTWRITEBYTECODE", use_env))),
        "no_user_site": int("s" in opts or isolated or bool(_env("PYTHONNOUSERSITE", use_env))),
        "ignore_environment": int(not use_env),
        "isolated": int(isolated),
        "safe_path": int("P" in opts or isolated or bool(_env("PYTHONSAFEPATH", use_env))),
        "quiet": int("q" in opts),
    }
    if any(getattr(sys.flags, k) != v for k, v in flags.items()):
        zy.set_flags(flags)
        sys.dont_write_bytecode = bool(flags["dont_write_bytecode"])
    unbuffered = "u" in opts or bool(_env("PYTHONUNBUFFERED", use_env))

    for s in sigignored:
        try:
            signal.signal(s, signal.SIG_IGN)
        except (OSError, ValueError):
            pass

    # sys.path: [path0] + PYTHONPATH + the standard library + user site + system site dirs.
    pythonpath = _env("PYTHONPATH", use_env)
    front = [os.path.abspath(p) for p in pythonpath.split(os.pathsep)] if pythonpath else []
    sys.path[:] = front + _BASE_PATH[:_SITE_START]
    same_home = "PYTHONUSERBASE" not in pyvars and os.environ.get("HOME") == "/home/user"
    if flags["no_user_site"]:
        site.ENABLE_USER_SITE = False
    elif not same_home or user_site_dir:
        site.USER_BASE = None
        site.USER_SITE = None
        site.ENABLE_USER_SITE = site.check_enableusersite()
        if site.ENABLE_USER_SITE:
            site.addusersitepackages(site._init_pathinfo())
    sys.path.extend(_BASE_PATH[_SITE_START:])
    if site.ENABLE_USER_SITE and (user_site_dir or front or _SYS_USERCUSTOMIZE or not same_home):
        site.execusercustomize()

    sys.stdin = sys.__stdin__ = _stdio(0, False, "<stdin>", encoding, errors, unbuffered,
                                       stdio[0])
    sys.stdout = sys.__stdout__ = _stdio(1, True, "<stdout>", encoding, errors, unbuffered,
                                         stdio[1])
    sys.stderr = sys.__stderr__ = _stdio(2, True, "<stderr>", encoding, "backslashreplace",
                                         unbuffered, stdio[2])

    warnoptions = []
    pywarnings = _env("PYTHONWARNINGS", use_env)
    if pywarnings:
        warnoptions += [w for w in pywarnings.split(",") if w]
    warnoptions += opts["W"]
    sys.warnoptions[:] = warnoptions
    if warnoptions:
        import warnings
        warnings._processoptions(warnoptions)

    if "time" in sys.modules and os.environ.get("TZ") != _TZ:
        sys.modules["time"].tzset()
    if "tempfile" in sys.modules:
        sys.modules["tempfile"].tempdir = None

    if mode == "c":
        sys.argv[:] = ["-c"] + rest
    elif mode == "m":
        sys.argv[:] = ["-m"] + rest
    elif mode == "file":
        sys.argv[:] = [target] + rest
        if not target.startswith("/"):
            target = os.getcwd() + "/" + target
    else:
        sys.argv[:] = [target] + rest
    sys.orig_argv[:] = ["python3"] + args
    if mode == "file" and zy.get_importer(target):
        sys.path.insert(0, target)
        mode, target = "m", None
    elif not flags["safe_path"]:
        sys.path.insert(0, _path0(mode, target if mode != "file" else sys.argv[0]))

    main = types.ModuleType("__main__")
    main.__loader__ = _MAIN_KEYS.get("__loader__")
    main.__annotations__ = {}
    main.__builtins__ = _MAIN_KEYS.get("__builtins__")
    sys.modules["__main__"] = main
    return mode, target, unbuffered
