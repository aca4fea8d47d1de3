# haultest - the AppArmor profile of tests/extra/rst_apparmor_qemu.sh: enforced,
# permissive enough for rst_aa_prog (it only needs its files and signals).
profile haultest {
  file,
  capability,
  network,
  signal,
  ptrace,
  unix,
  change_profile,
}
