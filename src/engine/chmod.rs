//! `--chmod` of COPY and ADD: an octal mode, or chmod(1)'s symbolic clauses
//! as the dockerfile frontend (≥ 1.14) accepts them (BSD `setmode`
//! grammar, in the variant BuildKit vendors): `u+x,g-w`, `go=u`, `a=rX`,
//! `u=rwx,go=u-w`.
//!
//! Grammar: clauses separated by `,`; each is `[ugoa]*` then one or more
//! actions `[+-=][rwxXst]*` or `[+-=][ugo]`. An empty who means every class.
//! A symbolic mode is resolved per copied entry against the entry's own
//! mode: `X` gives execute where the entry is a directory or already had
//! an execute bit (before any clause ran), except after `-`, where it is
//! `x`; `u`, `g` and `o` copy that class's bits as they stand when the
//! clause runs. `s` is ignored for `o` alone and `t` is only for a who
//! reaching beyond `o`; an empty who with `t` narrows the action to the
//! sticky bit, as BSD's setmode does.

const SET_ID: u32 = 0o6000;
const STICKY: u32 = 0o1000;
const ALL_X: u32 = 0o111;
/// What `a` names: both set-id bits and every rwx bit, not the sticky bit.
const STANDARD: u32 = 0o6777;

/// A `--chmod` value that is neither an octal mode nor symbolic clauses.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChmodError {
    #[error("invalid --chmod {value:?}: it should be octal and between 0 and 07777")]
    NotOctal { value: String },
    #[error("invalid --chmod {value:?}")]
    NotSymbolic { value: String },
}

/// The parsed `--chmod` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chmod {
    Octal(u32),
    Symbolic(Vec<Cmd>),
}

/// One step of a symbolic mode, applied in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmd {
    /// Set these bits.
    Add(u32),
    /// Clear these bits.
    Clear(u32),
    /// Set these bits if the entry is a directory or had an execute bit.
    AddX(u32),
    /// Copy class `from` (shift 6 user, 3 group, 0 other) onto the classes
    /// in `to` (user, group, other): `op` is `+`, `-` or `=`.
    Copy { from: u32, to: [bool; 3], op: u8 },
}

impl Chmod {
    /// Parses a `--chmod` value; the error names the value.
    pub fn parse(s: &str) -> Result<Chmod, ChmodError> {
        let bad = || ChmodError::NotSymbolic {
            value: s.to_string(),
        };
        let not_octal = || ChmodError::NotOctal {
            value: s.to_string(),
        };
        if s.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
            // as the frontend: octal up to 07777, anything else numeric is
            // refused with the octal message
            if !s.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return Err(not_octal());
            }
            return match u32::from_str_radix(s, 8) {
                Ok(m) if m <= 0o7777 => Ok(Chmod::Octal(m)),
                _ => Err(not_octal()),
            };
        }
        let b = s.as_bytes();
        let mut i = 0;
        let mut cmds = Vec::new();
        loop {
            let mut who = 0u32;
            loop {
                match b.get(i) {
                    None => return Err(bad()),
                    Some(b'a') => who |= STANDARD,
                    Some(b'u') => who |= 0o4700,
                    Some(b'g') => who |= 0o2070,
                    Some(b'o') => who |= 0o0007,
                    Some(_) => break,
                }
                i += 1;
            }
            let mut equal_done = false;
            // one or more actions
            loop {
                let op = b[i];
                i += 1;
                match op {
                    b'+' | b'-' => {}
                    b'=' => equal_done = false,
                    _ => return Err(bad()),
                }
                who &= !STICKY;
                let (mut perm, mut perm_x) = (0u32, 0u32);
                loop {
                    match b.get(i) {
                        Some(b'r') => perm |= 0o444,
                        Some(b'w') => perm |= 0o222,
                        Some(b'x') => perm |= ALL_X,
                        Some(b'X') if op == b'-' => perm |= ALL_X,
                        Some(b'X') => perm_x = ALL_X,
                        Some(b's') => {
                            if who == 0 || who & !0o007 != 0 {
                                perm |= SET_ID;
                            }
                        }
                        Some(b't') => {
                            if who == 0 || who & !0o007 != 0 {
                                who |= STICKY;
                                perm |= STICKY;
                            }
                        }
                        Some(&c @ (b'u' | b'g' | b'o')) => {
                            if perm != 0 {
                                push(&mut cmds, op, who, perm);
                                perm = 0;
                            }
                            if op == b'=' {
                                equal_done = true;
                            }
                            if perm_x != 0 {
                                cmds.push(Cmd::AddX(masked(who, perm_x)));
                                perm_x = 0;
                            }
                            let from = match c {
                                b'u' => 6,
                                b'g' => 3,
                                _ => 0,
                            };
                            let to = if who == 0 {
                                [true; 3]
                            } else {
                                [who & 0o400 != 0, who & 0o040 != 0, who & 0o004 != 0]
                            };
                            cmds.push(Cmd::Copy { from, to, op });
                        }
                        _ => {
                            if perm != 0 || (op == b'=' && !equal_done) {
                                if op == b'=' {
                                    equal_done = true;
                                }
                                push(&mut cmds, op, who, perm);
                            }
                            if perm_x != 0 {
                                cmds.push(Cmd::AddX(masked(who, perm_x)));
                            }
                            break;
                        }
                    }
                    i += 1;
                }
                match b.get(i) {
                    None => return Ok(Chmod::Symbolic(cmds)),
                    Some(b',') => {
                        i += 1;
                        break;
                    }
                    Some(_) => {}
                }
            }
        }
    }

    /// The mode for a copied entry whose own mode is `mode`.
    pub fn apply(&self, mode: u32, is_dir: bool) -> u32 {
        let cmds = match self {
            Chmod::Octal(m) => return *m,
            Chmod::Symbolic(cmds) => cmds,
        };
        let old = mode & 0o7777;
        let mut m = old;
        for cmd in cmds {
            match *cmd {
                Cmd::Add(bits) => m |= bits,
                Cmd::Clear(bits) => m &= !bits,
                Cmd::AddX(bits) => {
                    if is_dir || old & ALL_X != 0 {
                        m |= bits;
                    }
                }
                Cmd::Copy { from, to, op } => {
                    let value = (m >> from) & 0o7;
                    let shifts = [6, 3, 0];
                    if op != b'+' {
                        let clear = if op == b'=' { 0o7 } else { value };
                        for (k, s) in shifts.iter().enumerate() {
                            if to[k] {
                                m &= !(clear << s);
                            }
                        }
                    }
                    if op != b'-' {
                        for (k, s) in shifts.iter().enumerate() {
                            if to[k] {
                                m |= value << s;
                            }
                        }
                    }
                }
            }
        }
        m & 0o7777
    }

    /// The mode of the directories a COPY creates on the way to its
    /// destination (and of a directory destination it creates): an octal
    /// `--chmod`'s permission bits (BuildKit ≥ 0.21 makes them with it;
    /// the set-id and sticky bits do not reach them), else 0755 (a symbolic
    /// mode is only applied to copied entries).
    pub fn dir_mode(chmod: Option<&Chmod>) -> u32 {
        match chmod {
            Some(Chmod::Octal(m)) => m & 0o777,
            _ => 0o755,
        }
    }
}

fn masked(who: u32, bits: u32) -> u32 {
    if who == 0 { bits } else { who & bits }
}

/// `+`, `-` or `=` of `perm` for `who` (empty: every class).
fn push(cmds: &mut Vec<Cmd>, op: u8, who: u32, perm: u32) {
    if op == b'=' {
        cmds.push(Cmd::Clear(if who == 0 { STANDARD } else { who }));
    }
    let bits = masked(who, perm);
    cmds.push(if op == b'-' {
        Cmd::Clear(bits)
    } else {
        Cmd::Add(bits)
    });
}

#[cfg(test)]
mod tests {
    use super::Chmod;

    /// (mode string, entry mode, is a directory, expected mode), worked
    /// out with chmod(1)'s rules and BuildKit's X variant.
    #[test]
    fn symbolic_and_octal_modes() {
        let cases: &[(&str, u32, bool, u32)] = &[
            ("0751", 0o644, false, 0o751),
            ("755", 0o600, true, 0o755),
            ("4755", 0o600, false, 0o4755),
            ("0", 0o777, false, 0),
            ("u+x", 0o644, false, 0o744),
            ("go-r", 0o644, false, 0o600),
            ("go-w", 0o666, false, 0o644),
            ("u=rw,g=r,o=r", 0o777, false, 0o644),
            ("u+x,g-w", 0o664, false, 0o744),
            // go=u: group and other take the user's bits
            ("go=u", 0o755, false, 0o777),
            ("go=u", 0o644, false, 0o666),
            ("go=u", 0o700, true, 0o777),
            ("go=u-w", 0o751, false, 0o755),
            ("u=go", 0o640, false, 0o040),
            ("o+g", 0o750, false, 0o755),
            ("g-u", 0o775, false, 0o705),
            // X: directories, or files with an execute bit (before any clause)
            ("a=rX", 0o700, true, 0o555),
            ("a=rX", 0o600, false, 0o444),
            ("a=rX", 0o744, false, 0o555),
            ("u=rwX,go=rX", 0o755, true, 0o755),
            ("u=rwX,go=rX", 0o644, false, 0o644),
            ("u=rwX,go=rX", 0o100, false, 0o755),
            ("a+X", 0o666, false, 0o666),
            ("a+X", 0o124, true, 0o135),
            ("+X", 0o010, false, 0o111),
            ("a-x,a+X", 0o755, false, 0o755),
            // - X is x
            ("a-X", 0o755, false, 0o644),
            // an empty who is every class
            ("+w", 0o444, false, 0o666),
            ("=r", 0o4777, false, 0o444),
            ("=", 0o755, false, 0),
            ("go=", 0o755, false, 0o700),
            ("u+rw,g+r,o-x,o+w", 0o124, true, 0o766),
            // several actions in one clause
            ("u+r-w", 0o200, false, 0o400),
            // set-id and sticky bits
            ("u+s", 0o755, false, 0o4755),
            ("g+s", 0o755, true, 0o2755),
            ("o+s", 0o755, false, 0o755),
            ("+s", 0o755, false, 0o6755),
            ("+t", 0o777, true, 0o1777),
            ("a+t", 0o755, true, 0o1755),
            ("o+t", 0o755, true, 0o755),
            // BSD: an empty who with t narrows to the sticky bit
            ("+rt", 0o000, true, 0o1000),
            ("a-w,u+w", 0o777, false, 0o755),
        ];
        for &(s, mode, dir, want) in cases {
            let got = Chmod::parse(s)
                .unwrap_or_else(|e| panic!("{s}: {e}"))
                .apply(mode, dir);
            assert_eq!(
                got, want,
                "{s} on {mode:o} (dir {dir}): {got:o}, want {want:o}"
            );
        }
    }

    #[test]
    fn bad_modes_are_refused_by_name() {
        for s in [
            "", "9", "8", "07778", "77777", "z+x", "u", "u+x,", ",u+x", "u+xz", "u+x,,g+w", "u+q",
            "ug", "+x y", "é",
        ] {
            let e = Chmod::parse(s).expect_err(s).to_string();
            assert!(e.starts_with(&format!("invalid --chmod {s:?}")), "{s}: {e}");
        }
    }

    #[test]
    fn created_directories_take_only_an_octal_mode() {
        let dir = |s: &str| Chmod::dir_mode(Some(&Chmod::parse(s).unwrap()));
        assert_eq!(dir("400"), 0o400);
        assert_eq!(dir("4705"), 0o705);
        assert_eq!(dir("go=u"), 0o755);
        assert_eq!(Chmod::dir_mode(None), 0o755);
    }
}
