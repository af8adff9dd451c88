#!/usr/bin/env python3
"""Groups a `perf script` dump (recorded with --call-graph) of forcelink's heartbeat round into
cost centres: each sample goes to the innermost frame that names a known library or our code, so
libc (malloc, memcpy) and kernel time (fsync, futex, epoll, socket writes) count for whoever
called them. Also prints the top self-time symbols and the kernel share.

    perf script -i FILE.perf.data --no-inline -F comm,tid,ip,sym,dso | bench/perf-categories.py
"""
import collections
import re
import sys

# (category, regex on a frame's symbol), tried innermost user-space frame first; first hit wins.
CATEGORIES = [
    ("tracing / logging", r"tracing|nu_ansi_term|core::fmt|alloc::fmt|std::io::stdio|LineWriter"),
    ("serde_json", r"serde_json|serde::"),
    ("AES-GCM / SHA-2 / HMAC / base64", r"aes|ghash|gcm|polyval|sha2|hmac|base64|ring::|aws_lc"),
    ("sqlx / SQLite", r"sqlx_sqlite|sqlite3|forcelink_store_sqlite"),
    ("sqlx / PostgreSQL", r"sqlx_postgres|forcelink_store_postgres"),
    ("sqlx (pool, common)", r"sqlx|flume"),
    ("url parsing", r"url::|idna|form_urlencoded"),
    ("reqwest / hyper / HTTP", r"reqwest|hyper|h2::|http::|tower|axum"),
    ("papaya", r"papaya|seize"),
    ("metrics", r"metrics"),
    ("chrono / uuid", r"chrono|uuid"),
    ("forcelink (our code)", r"forcelink"),
    ("tokio scheduling / IO driver", r"tokio|mio::|parking_lot"),
]
COMPILED = [(name, re.compile(pattern)) for name, pattern in CATEGORIES]
KERNEL = [
    ("context switches, futex, epoll", r"schedule|finish_task_switch|futex|epoll|_raw_spin_unlock_irq|try_to_wake_up|exit_to_user_mode"),
    ("fsync, block IO, filesystem", r"fsync|ext4|jbd2|blk|iowrite|virtio|xfs|vfs_write|filemap|folio|iomap|pwrite|fdatasync|overlay|ovl_"),
    ("TCP, loopback, sockets", r"tcp|sock|inet|__send|recv|skb|net_|ip_|loopback|softirq"),
]
KERNEL_COMPILED = [(name, re.compile(pattern)) for name, pattern in KERNEL]


def symbol(frame):
    """The symbol of a `perf script` frame line without its DSO."""
    return re.sub(r"\s*\([^()]*\)$", "", frame)


def samples(stream):
    header, frames = None, []
    for line in stream:
        line = line.rstrip("\n")
        if not line.strip():
            if header is not None:
                yield header, frames
            header, frames = None, []
        elif not line.startswith(("\t", " ")):
            header, frames = line, []
        else:
            parts = line.strip().split(None, 1)
            frames.append(parts[1] if len(parts) > 1 else parts[0])
    if header is not None:
        yield header, frames


def main():
    by_category = collections.Counter()
    kernel_by_category = collections.Counter()
    kernel_kind = collections.Counter()
    by_self = collections.Counter()
    by_thread = collections.Counter()
    total = kernel = 0
    for header, frames in samples(sys.stdin):
        if not frames:
            continue
        total += 1
        thread = re.sub(r"[-_ ]?\d+$", "", header.split()[0]) if header.split() else "?"
        by_thread[thread.rstrip("-")] += 1
        by_self[symbol(frames[0])[:110]] += 1
        in_kernel = "[kernel" in frames[0]
        user = [symbol(f) for f in frames if "[kernel" not in f and "libc.so" not in f]
        category = next(
            (name for f in user for name, rx in COMPILED if rx.search(f)),
            "other (libc, std, unresolved)",
        )
        by_category[category] += 1
        if in_kernel:
            kernel += 1
            kernel_by_category[category] += 1
            ksyms = " ".join(symbol(f) for f in frames if "[kernel" in f)
            kind = next((name for name, rx in KERNEL_COMPILED if rx.search(ksyms)), "other kernel")
            kernel_kind[kind] += 1
    if not total:
        print("no samples")
        return
    pct = lambda n: f"{100 * n / total:5.1f} %"
    print(f"samples: {total}; in the kernel: {kernel} ({pct(kernel).strip()})")
    print("\nby thread")
    for name, count in by_thread.most_common(8):
        print(f"  {pct(count)}  {name}")
    print("\nkernel time by kind")
    for name, count in kernel_kind.most_common():
        print(f"  {pct(count)}  {name}")
    print("\ncost centre (innermost known user-space frame; libc and kernel time go to it)")
    for name, count in by_category.most_common():
        print(f"  {pct(count)}  {name}  (of which in the kernel {pct(kernel_by_category[name]).strip()})")
    print("\ntop 25 self-time symbols")
    for sym, count in by_self.most_common(25):
        print(f"  {pct(count)}  {sym}")


if __name__ == "__main__":
    main()
