"""Plain data across a pipe: the codec between a candidate program and the tester that judges it.

Standard library only: this file's source is pasted into both sandboxed programs (they run the
base interpreter with `-I` and cannot import proctor). Messages are a 4-byte big-endian length
and a JSON document. Values are tagged so that types survive the trip exactly:

    None, bool, str            as JSON          int      JSON number, or {"I": hex} past 4000 digits
    float                      {"f": repr}      complex  {"c": [repr, repr]}
    bytes                      {"b": hex}       list     JSON array
    tuple                      {"t": [...]}     set      {"s": [...]}   frozenset {"z": [...]}
    dict                       {"d": [[k, v], ...]}       a handle (see below) {"h": id}

`encode` turns a subclass of one of those types into a value of the base type (read with the base
type's own methods, so no override runs). `decode` is the trusted side: it builds only those exact built-in types (never a subclass, never
an object of the sender's making), refuses anything else, and bounds size, depth and count. A
handle names an object that stays in the candidate process; the tester sees it as an opaque
`Remote` that can be passed back or asked for attributes, never compared (see tester.py).
"""

import json
import os
import struct

MAX_MESSAGE = 32 << 20  # bytes in one message
MAX_DEPTH = 100
MAX_ITEMS = 1 << 20  # values in one message
_BIG_INT = 4000  # decimal digits: past this, hex (int('...') has a digit limit)


class WireError(Exception):
    """A message that is not plain data, too big, too deep, or cut off."""


class NotPlain(WireError):
    """A value that is not plain data (the sender's `encode` found an object of another type)."""


def _enc(value, depth, handle):
    if depth > MAX_DEPTH:
        raise NotPlain("nested deeper than %d" % MAX_DEPTH)
    t = type(value)
    if value is None or t is bool or t is str:
        return value
    if t is int:
        if value.bit_length() > _BIG_INT * 3:
            return {"I": "%x" % value}
        return value
    if t is float:
        return {"f": repr(value)}
    if t is complex:
        return {"c": [repr(value.real), repr(value.imag)]}
    if t is bytes:
        return {"b": value.hex()}
    if t is list:
        return [_enc(v, depth + 1, handle) for v in value]
    if t is tuple:
        return {"t": [_enc(v, depth + 1, handle) for v in value]}
    if t is set:
        return {"s": [_enc(v, depth + 1, handle) for v in value]}
    if t is frozenset:
        return {"z": [_enc(v, depth + 1, handle) for v in value]}
    if t is dict:
        return {"d": [[_enc(k, depth + 1, handle), _enc(v, depth + 1, handle)] for k, v in value.items()]}
    base = _base_value(value)
    if base is not None:
        return _enc(base, depth, handle)
    if handle is not None:
        h = handle(value)
        if h is not None:
            return {"h": h}
    raise NotPlain("a %s is not plain data" % _type_name(value))


# A subclass of a plain type (Counter, OrderedDict, a namedtuple, an IntEnum) becomes a value of the
# base type, read with the base type's own methods (an override of __iter__ or __eq__ is not
# called): what the tester gets is plain data either way.
_BASES = (
    (int, lambda v: int.__int__(v)),
    (float, lambda v: float.__float__(v)),
    (complex, lambda v: complex.__complex__(v)),
    (str, lambda v: str.__str__(v)),
    (bytes, lambda v: bytes.__bytes__(v)),
    (dict, lambda v: dict(dict.items(v))),
    (list, lambda v: list(list.__iter__(v))),
    (tuple, lambda v: tuple(tuple.__iter__(v))),
    (frozenset, lambda v: frozenset(frozenset.__iter__(v))),
    (set, lambda v: set(set.__iter__(v))),
)


def _base_value(value):
    for base, convert in _BASES:
        if isinstance(value, base):
            out = convert(value)
            if type(out) is base:
                return out
            return None
    return None


def _type_name(value):
    try:
        return type(value).__name__
    except Exception:  # a hostile metaclass
        return "object"


def encode(value, handle=None):
    """The JSON-able form of `value`; `handle(obj)` (or None) may give an id for a non-plain object."""
    return _enc(value, 0, handle)


class _Decoder:
    def __init__(self, remote):
        self.items = 0
        self.remote = remote

    def value(self, x, depth):
        self.items += 1
        if self.items > MAX_ITEMS:
            raise WireError("more than %d values" % MAX_ITEMS)
        if depth > MAX_DEPTH:
            raise WireError("nested deeper than %d" % MAX_DEPTH)
        t = type(x)
        if x is None or t is bool or t is str:
            return x
        if t is int:
            return int(x)
        if t is list:
            return [self.value(v, depth + 1) for v in x]
        if t is dict and len(x) == 1:
            (tag, body), = x.items()
            if tag == "f" and type(body) is str and len(body) < 40:
                return float(body)
            if tag == "I" and type(body) is str and len(body) < MAX_MESSAGE:
                return int(body, 16)
            if tag == "c" and type(body) is list and len(body) == 2 and all(type(p) is str and len(p) < 40 for p in body):
                return complex(float(body[0]), float(body[1]))
            if tag == "b" and type(body) is str:
                return bytes.fromhex(body)
            if tag in ("t", "s", "z") and type(body) is list:
                items = [self.value(v, depth + 1) for v in body]
                return tuple(items) if tag == "t" else set(items) if tag == "s" else frozenset(items)
            if tag == "d" and type(body) is list:
                out = {}
                for pair in body:
                    if type(pair) is not list or len(pair) != 2:
                        raise WireError("a dict item is not a [key, value] pair")
                    out[self.value(pair[0], depth + 1)] = self.value(pair[1], depth + 1)
                return out
            if tag == "h" and type(body) is int and self.remote is not None:
                return self.remote(body)
        raise WireError("not a plain value: %.80r" % (x,))


def decode(data, remote=None):
    """The value of an encoded JSON-able form; `remote(id)` turns a handle into the caller's proxy."""
    try:
        return _Decoder(remote).value(data, 0)
    except WireError:
        raise
    except (TypeError, ValueError, RecursionError, MemoryError, OverflowError) as e:
        raise WireError("%s: %s" % (type(e).__name__, str(e)[:200]))


def send(fd, message):
    """Write one message (a JSON-able dict) to `fd`."""
    data = json.dumps(message, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
    if len(data) > MAX_MESSAGE:
        raise NotPlain("a message of %d bytes (the limit is %d)" % (len(data), MAX_MESSAGE))
    view = memoryview(struct.pack(">I", len(data)) + data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _read_exact(fd, n):
    chunks, left = [], n
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(fd):
    """One message from `fd` as parsed JSON, None at end of file; WireError when malformed."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    (size,) = struct.unpack(">I", head)
    if size > MAX_MESSAGE:
        raise WireError("a message of %d bytes (the limit is %d)" % (size, MAX_MESSAGE))
    data = _read_exact(fd, size)
    if data is None:
        raise WireError("the message was cut off")
    try:
        return json.loads(data.decode("ascii"), parse_constant=_no_constant)
    except (ValueError, RecursionError, MemoryError) as e:
        raise WireError("not JSON: %s" % str(e)[:200])


def _no_constant(name):
    raise ValueError("%s is not allowed" % name)
