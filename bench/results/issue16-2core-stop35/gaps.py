import re,sys
tid=sys.argv[2]; minms=float(sys.argv[3])
L=re.compile(r"\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(\w+):\s+(.*)")
ev=[]
for line in open(sys.argv[1]):
    m=L.match(line)
    if m: ev.append((float(m.group(4)),int(m.group(3)),m.group(5),m.group(6),m.group(1),m.group(2)))
ev.sort()
last_out=None; state=None; wake=None
for t,cpu,kind,rest,comm,pid in ev:
    if kind=='sched_switch':
        if f"prev_pid={tid} " in rest:
            last_out=t; state=re.search(r'prev_state=(\S+)',rest).group(1); wake=None
        elif f"next_pid={tid} " in rest:
            if last_out and (t-last_out)*1000>=minms:
                print(f"{last_out:.4f} gap {(t-last_out)*1000:.1f} ms out-state {state} woken {'%.1f ms after out'%((wake-last_out)*1000) if wake else '-'} ran-after-wake {((t-wake)*1000 if wake else 0):.2f} ms cpu{cpu}")
    elif kind=='sched_wakeup' and f"pid={tid} " in rest:
        if wake is None: wake=t
