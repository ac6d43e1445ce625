"""Whether every two LAPACK calls of a compiled XLA:CPU program are ordered by data dependencies.

jaxlib 0.10 on 2 CPU cores deadlocks when two batched LAPACK calls of one program run side by
side (both wait for the same two-thread pool); XLA may run any two independent instructions
concurrently, so every pair must be ordered by a data dependency. Parses the HLO text.
"""
import re


def _parse(hlo_text):
    comps, cur, entry = {}, None, None
    for raw in hlo_text.splitlines():
        line = raw.strip()
        m = re.match(r"^(ENTRY\s+)?%?([\w.\-]+)\s*(\(.*\))?.*\{$", line)
        if m and ("->" in line or line.startswith("ENTRY")) and "=" not in line.split("{")[0]:
            cur = m.group(2)
            comps[cur] = []
            if m.group(1):
                entry = cur
            continue
        if line == "}":
            cur = None
            continue
        if cur is None or "=" not in line:
            continue
        name = line.split("=", 1)[0].replace("ROOT", "").strip().lstrip("%")
        rhs = line.split("=", 1)[1]
        comps[cur].append((name, rhs))
    return comps, entry


def lapack_unordered_pairs(hlo_text):
    comps, entry = _parse(hlo_text)
    memo = {}

    def has_lapack(comp):
        if comp not in memo:
            memo[comp] = False
            for _, rhs in comps.get(comp, []):
                if "lapack_" in rhs or any(has_lapack(c) for c in re.findall(r"(?:calls|body|condition|to_apply|branch_computations)=\{?%?([\w.\-]+)", rhs)):
                    memo[comp] = True
                    break
        return memo[comp]

    def inst_lapack(rhs):
        if "lapack_" in rhs:
            return True
        called = re.findall(r"%([\w.\-]+)", rhs.split("(", 1)[1]) if "(" in rhs else []
        attrs = re.findall(r"(?:calls|body|condition|to_apply)=%?([\w.\-]+)", rhs)
        for grp in re.findall(r"branch_computations=\{([^}]*)\}", rhs):
            attrs += [c.strip().lstrip("%") for c in grp.split(",")]
        return any(has_lapack(c) for c in attrs)

    bad = []
    for comp, insts in comps.items():
        names = {n for n, _ in insts}
        deps = {}
        for n, rhs in insts:
            args = rhs.split("(", 1)[1] if "(" in rhs else ""
            args = args.split("),", 1)[0]
            deps[n] = {a for a in re.findall(r"%([\w.\-]+)", args) if a in names}
        anc = {}

        def ancestors(n):
            if n not in anc:
                anc[n] = set()
                for d in deps[n]:
                    anc[n] |= {d} | ancestors(d)
            return anc[n]

        lap = [n for n, rhs in insts if inst_lapack(rhs)]
        for i, a in enumerate(lap):
            for b in lap[i + 1:]:
                if a not in ancestors(b) and b not in ancestors(a):
                    bad.append((comp, a, b))
    return bad
