"""The candidate side of a split run (pasted after wire.py into the sandboxed candidate program).

It runs the model's code (with the prompt before it) in a namespace of its own, then answers the
tester's requests on the request pipe until that pipe closes: call a named object or a handle,
get or set an attribute. Every answer is plain data (wire.encode), a handle where the tester
asked for one, or the name and text of the exception raised. Nothing here is trusted: the code
under test can rewrite all of it, and can only ever send bytes that the tester decodes as plain data.
"""


def _describe(exc):
    try:
        text = str(exc)
    except BaseException:
        text = "<unprintable>"
    return [_type_name(exc), text[:2000]]


def _candidate_main(req_fd, rep_fd, source, filename):
    import sys
    import traceback

    objects = {}
    ids = {}

    def handle(obj):
        key = id(obj)
        if key not in ids:
            ids[key] = len(objects) + 1
            objects[ids[key]] = obj
        return ids[key]

    def local(h):
        if h not in objects:
            raise WireError("no object %r" % h)
        return objects[h]

    ns = {"__name__": "__candidate__", "__builtins__": __builtins__}
    load_error = None
    try:
        exec(compile(source, filename, "exec"), ns)
    except BaseException as exc:  # SystemExit too: the code did not load, every request gets this
        load_error = _describe(exc)
        traceback.print_exc()
    sys.stdout.flush()

    while True:
        try:
            msg = receive(req_fd)
        except WireError:
            return
        if msg is None or type(msg) is not dict:
            return
        if load_error is not None:
            reply = {"load_error": load_error}
        else:
            reply = _answer(msg, ns, handle, local)
        try:
            send(rep_fd, reply)
        except NotPlain as exc:  # an exception text too big to send
            send(rep_fd, {"raise": ["RuntimeError", str(exc)]})


def _answer(msg, ns, handle, local):
    try:
        if "name" in msg:
            if msg["name"] not in ns:
                raise NameError("name %r is not defined" % (msg["name"],))
            target = ns[msg["name"]]
        else:
            target = local(msg["h"])
        op = msg.get("op")
        if op == "call":
            args = decode(msg.get("args", []), local)
            kwargs = decode(msg.get("kwargs", {"d": []}), local)
            value = target(*args, **kwargs)
        elif op == "getattr":
            value = getattr(target, msg["attr"])
        elif op == "setattr":
            setattr(target, msg["attr"], decode(msg["value"], local))
            value = None
        else:
            return {"raise": ["RuntimeError", "unknown request %r" % (op,)]}
    except BaseException as exc:
        return {"raise": _describe(exc)}
    try:
        return {"ok": encode(value, handle if msg.get("handles") else None)}
    except NotPlain as exc:
        return {"not_plain": str(exc)}
    except BaseException as exc:  # e.g. RecursionError on a self-containing list
        return {"not_plain": "%s: %s" % tuple(_describe(exc))}
