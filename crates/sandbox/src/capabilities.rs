//! The five capability sets of a process (bounding, effective, permitted,
//! inheritable, ambient), from the OCI names such as `CAP_NET_ADMIN`.

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};

/// Errors from capability operations.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("process.capabilities.{set}: unknown capability {name:?}; use names such as CAP_CHOWN")]
    Unknown { set: &'static str, name: String },
    #[error("cannot set the {set} capability set: {source}")]
    Apply {
        set: &'static str,
        source: caps::errors::CapsError,
    },
}

/// The capability sets to give a process. `None` leaves a set empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapSets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

/// Parses capability names for one set; names the kernel does not support
/// are dropped (as runc does), unknown names are an error.
pub fn parse_set<'a>(
    set: &'static str,
    names: impl IntoIterator<Item = &'a str>,
) -> Result<CapsHashSet, CapsError> {
    let supported = caps::runtime::thread_all_supported();
    let mut out = CapsHashSet::new();
    for name in names {
        let full = if name.starts_with("CAP_") {
            name.to_string()
        } else {
            format!("CAP_{name}")
        };
        let cap = Capability::from_str(&full).map_err(|_| CapsError::Unknown {
            set,
            name: name.to_string(),
        })?;
        if supported.contains(&cap) {
            out.insert(cap);
        }
    }
    Ok(out)
}

/// Drops every capability not in `keep` from the bounding set. Needs
/// CAP_SETPCAP: call before switching to the container user.
pub fn restrict_bounding(keep: &CapsHashSet) -> Result<(), CapsError> {
    for cap in caps::runtime::thread_all_supported() {
        if !keep.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(|source| CapsError::Apply {
                set: "bounding",
                source,
            })?;
        }
    }
    Ok(())
}

/// Sets the permitted, inheritable, effective and ambient sets (in the order
/// the kernel accepts). Call after the user switch (with keepcaps set).
pub fn apply_sets(sets: &CapSets) -> Result<(), CapsError> {
    let err = |set: &'static str| move |source| CapsError::Apply { set, source };
    // Widen effective to the new permitted first so that lowering works.
    let mut perm = sets.permitted.clone();
    perm.extend(sets.effective.iter().copied());
    caps::set(
        None,
        CapSet::Effective,
        &sets.effective.intersection(&perm).copied().collect(),
    )
    .or_else(|_| caps::set(None, CapSet::Effective, &CapsHashSet::new()))
    .map_err(err("effective"))?;
    caps::set(None, CapSet::Inheritable, &sets.inheritable).map_err(err("inheritable"))?;
    caps::set(None, CapSet::Permitted, &sets.permitted).map_err(err("permitted"))?;
    caps::set(None, CapSet::Effective, &sets.effective).map_err(err("effective"))?;
    caps::clear(None, CapSet::Ambient).map_err(err("ambient"))?;
    for cap in &sets.ambient {
        // The kernel refuses an ambient capability that is not both
        // permitted and inheritable; runc ignores such entries too.
        if sets.permitted.contains(cap) && sets.inheritable.contains(cap) {
            caps::raise(None, CapSet::Ambient, *cap).map_err(err("ambient"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_with_and_without_prefix() {
        let s = parse_set("bounding", ["CAP_CHOWN", "KILL"]).expect("valid names");
        assert!(s.contains(&Capability::CAP_CHOWN));
        assert!(s.contains(&Capability::CAP_KILL));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn unknown_name_is_an_error_naming_the_set() {
        let err = parse_set("effective", ["CAP_FLY"]).expect_err("unknown");
        let msg = err.to_string();
        assert!(
            msg.contains("effective") && msg.contains("CAP_FLY"),
            "{msg}"
        );
    }
}
