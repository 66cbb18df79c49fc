"""Writes the rule sets of benches/rule_mix.sh: base (brute_force_login), plus50 (50 single-event
rules), plus60 (10 aggregations more) and plus65 (5 sequences more), each a directory of .rule
files. The rules are realistic shapes over vigil-gen's fields (authentication, process, network
and DNS events): equality, case-insensitive lists, prefixes and suffixes, CIDRs, substrings and
regexes; some match often, most rarely, as in a real library."""

import pathlib
import shutil
import sys

out = pathlib.Path(sys.argv[1])
brute = pathlib.Path("rules/auth/brute_force_login.rule").read_text()

PROCS = ["rundll32.exe", "cmd.exe", "net.exe", "powershell.exe", "curl", "bash", "python3",
         "sshd", "java", "svchost.exe"]


def single(i):
    """The i-th single-event rule: ten shapes, five variations each."""
    shape, v = i % 10, i // 10
    p = PROCS[(i * 3) % len(PROCS)]
    body = [
        f'event.category == "process" and process.name =~ "{p}" and process.command_line contains~ "-flag{v}"',
        f'event.category == "process" and process.name in~ ["{p}", "tool{v}.exe", "x{v}.bin"] and user.name startswith "svc{v}"',
        f'event.category == "authentication" and event.outcome == "success" and source.ip cidr ["203.0.{113 + v}.0/24", "198.51.{v}.0/24"]',
        f'event.category == "network" and destination.port in [{4440 + v}, {6660 + v}, {31337 + v}]',
        f'event.action == "dns_query" and dns.question.name endswith~ ".bad{v}.example"',
        f'event.category == "process" and process.command_line matches /(?i)invoke-(mimikatz|bloodhound|kerberoast){v}/',
        f'host.name startswith "dc-{v}" and event.outcome == "failure" and user.name == "admin{v}"',
        f'event.category == "process" and not (process.name in ["chrome.exe", "svchost.exe", "java"]) and process.command_line contains "\\\\temp{v}\\\\"',
        f'event.category == "network" and event.outcome == "failure" and destination.ip cidr "10.{v}.0.0/16" and source.port < {1024 + v}',
        f'message contains~ "suspicious{v}" or (event.action == "logon" and host.name == "okta-{v}" and user.name endswith "{v}9")',
    ][shape]
    return f'''rule mix.single_{i:02} {{
    title "single {i}"
    severity low
    match {body}
}}
'''


AGGS = [
    'event.category == "authentication" and event.outcome == "failure"|count >= 20 by host.name within 10m',
    'event.category == "authentication" and event.outcome == "failure"|distinct count of user.name >= 30 by source.ip within 10m',
    'event.category == "network"|distinct count of destination.port >= 40 by source.ip within 1m',
    'event.category == "network"|sum of source.port >= 100000000 by source.ip within tumbling 1h',
    'event.category == "process"|count >= 50 by host.name within hopping 10m every 2m',
    'event.category == "authentication"|distinct count of host.name >= 12 by user.name within session 30m max 12h',
    'event.action == "dns_query"|count >= 200 by host.name within 5m',
    'event.category == "network"|max of destination.port >= 65000 by source.ip within tumbling 10m',
    'event.category == "process" and process.name =~ "powershell.exe"|count >= 10 by user.name within 15m',
    'event.category == "network"|avg of source.port < 1100 by host.name within hopping 30m every 10m',
]


def aggregation(i):
    match, when = AGGS[i].split("|")
    return f'''rule mix.agg_{i:02} {{
    title "aggregation {i}"
    severity medium
    match {match}
    when {when}
}}
'''


SEQS = [
    '''sequence by user.name within 10m {
        failed: event.category == "authentication" and event.outcome == "failure" runs 3
        ok:     event.category == "authentication" and event.outcome == "success"
    }''',
    '''sequence by user.name, host.name within 5m {
        logon: event.action == "logon" and event.outcome == "success"
        shell: event.category == "process" and process.name in~ ["cmd.exe", "powershell.exe", "bash"]
        net:   event.category == "network"
    }''',
    '''sequence by host.name within 30m {
        fail:  event.category == "authentication" and event.outcome == "failure" runs 5
        ok:    event.category == "authentication" and event.outcome == "success"
        until: event.action == "password-reset"
    }''',
    '''sequence by source.ip within 2m {
        dns:  event.action == "dns_query"
        conn: event.category == "network" and destination.port in [22, 3389, 5985]
    }''',
    '''sequence by user.name within 15m {
        proc:        event.category == "process" and process.name =~ "net.exe"
        not cleanup: event.category == "process" and process.name =~ "svchost.exe"
    }''',
]


def sequence(i):
    return f'''rule mix.seq_{i:02} {{
    title "sequence {i}"
    severity high
    {SEQS[i]}
}}
'''


sets = {
    "base": [],
    "plus50": [single(i) for i in range(50)],
}
sets["plus60"] = sets["plus50"] + [aggregation(i) for i in range(10)]
sets["plus65"] = sets["plus60"] + [sequence(i) for i in range(5)]
for name, rules in sets.items():
    d = out / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    (d / "brute_force_login.rule").write_text(brute)
    for n, text in enumerate(rules):
        (d / f"mix_{n:02}.rule").write_text(text)
