//! An instance pinned by the previous layout keeps its service and real ids: `LB_SERVICES_V1`
//! (ring state in the entry) and `LB_REALS_V1` (one copy per id) are read at start-up, so
//! every flow keeps its real across the upgrade, and removed once the new program runs.
//! The flows of `LB_FLOWS_V1` (an LRU without connection state) are copied into
//! `LB_FLOWS_V2` and counted. Needs root (bpffs, BPF maps).

use std::{
    ffi::CString,
    os::fd::RawFd,
    path::{Path, PathBuf},
};

use lb_common::{
    ConnCounts, FAMILY_IPV4, FAMILY_IPV6, FORWARD_DR, Flow, FlowKey, PREVIOUS_MAP_FLOWS, PROTO_TCP,
    PROTO_UDP, PreviousFlow, REAL_AVAILABLE, Real, Service, ServiceKey,
    conntrack::{STATE_ESTABLISHED, STATE_UDP},
};
use lb_tests::privilege::require_root;
use lb_userspace::{
    admin::monotonic_now_ns,
    config::Limits,
    dataplane::{DataplaneReader as _, EbpfReader, loader},
};

/// `bpf(cmd, attr)` with a zero-padded attribute block, as the kernel accepts.
fn bpf(command: libc::c_long, attr: &[u64; 16]) -> i64 {
    // SAFETY: `attr` is 128 bytes, every pointer in it points at live memory of the right
    // size for `command`.
    unsafe { libc::syscall(libc::SYS_bpf, command, attr.as_ptr(), 128) }
}

/// Creates, fills and pins a map of `map_type` (hash 1, array 2, LRU hash 9), as the previous
/// version laid its maps out.
fn pin_previous_layout<K, V>(path: &Path, map_type: u64, entries: &[(K, V)]) {
    const BPF_MAP_CREATE: libc::c_long = 0;
    const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
    const BPF_OBJ_PIN: libc::c_long = 6;
    let mut create = [0u64; 16];
    // map_type | key_size, value_size | max_entries
    create[0] = map_type | ((size_of::<K>() as u64) << 32);
    create[1] = size_of::<V>() as u64 | (16 << 32);
    let fd = bpf(BPF_MAP_CREATE, &create);
    assert!(
        fd >= 0,
        "BPF_MAP_CREATE: {}",
        std::io::Error::last_os_error()
    );
    let fd = fd as RawFd;
    for (key, value) in entries {
        let mut update = [0u64; 16];
        update[0] = fd as u64;
        update[1] = key as *const K as u64;
        update[2] = value as *const V as u64;
        assert_eq!(
            bpf(BPF_MAP_UPDATE_ELEM, &update),
            0,
            "{}",
            std::io::Error::last_os_error()
        );
    }
    let pathname = CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let mut pin = [0u64; 16];
    pin[0] = pathname.as_ptr() as u64;
    pin[1] = fd as u64;
    assert_eq!(
        bpf(BPF_OBJ_PIN, &pin),
        0,
        "BPF_OBJ_PIN: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: our own descriptor, not used afterwards (the pin keeps the map).
    unsafe { libc::close(fd) };
}

#[test]
fn reals_pinned_in_the_previous_layout_keep_their_ids() {
    if !require_root("reals_pinned_in_the_previous_layout_keep_their_ids") {
        return;
    }
    let dir = Path::new(loader::BPFFS_ROOT)
        .join("lb")
        .join(format!("lbt-upgrade-{}", std::process::id()));
    let _ = loader::unpin_all(&dir);
    let limits = Limits {
        flows: 1024,
        table_slots: 1 << 16,
        services: 8,
        reals: 16,
    };
    // Loading once makes the pin directory (on bpffs, mounted if need be).
    drop(loader::load(&limits, Some(&dir)).unwrap_or_else(|e| panic!("{e}")));
    let real = |last: u8| Real {
        addr: [192, 0, 2, last, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        mac: [2, 0, 0, 0, 0, last],
        port_be: 80u16.to_be(),
        ifindex: 2,
        service_id: 1,
        flags: REAL_AVAILABLE,
        forward: FORWARD_DR,
        family: FAMILY_IPV4,
        _pad: [0; 2],
    };
    let reals = vec![(3u32, real(11)), (7, real(12))];
    pin_previous_layout(&dir.join("LB_REALS_V1"), 2, &reals);
    let key = ServiceKey {
        vip: [192, 0, 2, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        port_be: 80u16.to_be(),
        protocol: PROTO_TCP,
        family: FAMILY_IPV4,
    };
    // The old entry: id, ring length, flags, then forward and ring half in the last word.
    let old_entry: [u32; 4] = [5, 3, 0, u32::from(FORWARD_DR) | (1 << 8)];
    pin_previous_layout(&dir.join("LB_SERVICES_V1"), 1, &[(key, old_entry)]);

    let (services, read_reals) = loader::previous_layout(&dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .expect("the previous layout is found");
    assert_eq!(read_reals, reals);
    assert_eq!(
        services,
        vec![(
            key,
            Service {
                id: 5,
                flags: 0,
                forward: FORWARD_DR,
                ..Service::default()
            }
        )]
    );
    loader::remove_retired_pins(&dir);
    assert!(!dir.join("LB_REALS_V1").exists() && !dir.join("LB_SERVICES_V1").exists());
    assert!(loader::previous_layout(&dir).unwrap().is_none());
    loader::unpin_all(&dir).unwrap();
}

/// A pin directory of this test process, removed with everything in it when dropped, so that
/// a failing test leaves nothing pinned either.
struct PinDir(PathBuf);

impl PinDir {
    fn new(prefix: &str) -> PinDir {
        let dir = Path::new(loader::BPFFS_ROOT)
            .join("lb")
            .join(format!("{prefix}{}", std::process::id()));
        // Process ids come round again: a run killed before its guard dropped may have left
        // this directory.
        let _ = loader::unpin_all(&dir);
        PinDir(dir)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        if let Err(error) = loader::unpin_all(&self.0) {
            eprintln!("unpinning {}: {error}", self.0.display());
        }
    }
}

fn flows_of(reader: &EbpfReader) -> Vec<(FlowKey, Flow)> {
    let mut flows = Vec::new();
    reader
        .for_each_flow(&mut |key, flow| flows.push((*key, *flow)))
        .unwrap_or_else(|e| panic!("reading {}: {e}", lb_common::MAP_FLOWS));
    flows.sort_by_key(|(key, _)| key.protocol);
    flows
}

fn connections(reader: &EbpfReader, real_id: u32) -> ConnCounts {
    reader
        .connections(real_id)
        .unwrap_or_else(|e| panic!("connections of real {real_id}: {e}"))
}

#[test]
fn flows_pinned_in_the_previous_layout_are_kept_and_counted() {
    if !require_root("flows_pinned_in_the_previous_layout_are_kept_and_counted") {
        return;
    }
    let dir = PinDir::new("lbt-upgrade-flows-");
    let limits = Limits {
        flows: 1024,
        table_slots: 1 << 16,
        services: 8,
        reals: 16,
    };
    // Loading once makes the pin directory (on bpffs, mounted if need be).
    drop(loader::load(&limits, Some(&dir.0)).unwrap_or_else(|e| panic!("first load: {e}")));

    let now = monotonic_now_ns();
    let tcp_key = FlowKey {
        src: [203, 0, 113, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        dst: [192, 0, 2, 100, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        src_port_be: 40000u16.to_be(),
        dst_port_be: 80u16.to_be(),
        protocol: PROTO_TCP,
        family: FAMILY_IPV4,
        _pad: [0; 2],
    };
    let mut udp_src = [0; 16];
    udp_src[..2].copy_from_slice(&[0x20, 0x01]);
    udp_src[15] = 7;
    let udp_key = FlowKey {
        src: udp_src,
        dst: [
            0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01, 0x00,
        ],
        src_port_be: 5353u16.to_be(),
        dst_port_be: 53u16.to_be(),
        protocol: PROTO_UDP,
        family: FAMILY_IPV6,
        _pad: [0; 2],
    };
    let tcp_flow = PreviousFlow {
        real_id: 3,
        service_id: 1,
        last_seen_ns: now - 5_000_000_000,
    };
    let udp_flow = PreviousFlow {
        real_id: 5,
        service_id: 2,
        last_seen_ns: now - 1_000_000_000,
    };
    let old_path = dir.0.join(PREVIOUS_MAP_FLOWS);
    pin_previous_layout(&old_path, 9, &[(tcp_key, tcp_flow), (udp_key, udp_flow)]);

    let loaded = loader::load(&limits, Some(&dir.0)).unwrap_or_else(|e| panic!("upgrade: {e}"));
    let reader = &loaded.reader;
    let migrated = |old: PreviousFlow, state: u8| Flow {
        real_id: old.real_id,
        service_id: old.service_id,
        last_seen_ns: old.last_seen_ns,
        state: u32::from(state),
        ..Flow::default()
    };
    let expected_flows = vec![
        (tcp_key, migrated(tcp_flow, STATE_ESTABLISHED)),
        (udp_key, migrated(udp_flow, STATE_UDP)),
    ];
    assert_eq!(
        flows_of(reader),
        expected_flows,
        "{} after the upgrade: the old TCP flow established, the UDP flow UDP",
        lb_common::MAP_FLOWS
    );
    let counted = [
        (
            3,
            ConnCounts {
                active: 1,
                inactive: 0,
            },
        ),
        (
            5,
            ConnCounts {
                active: 0,
                inactive: 1,
            },
        ),
    ];
    for (real_id, counts) in counted {
        assert_eq!(
            connections(reader, real_id),
            counts,
            "connections of real {real_id} after the upgrade"
        );
    }

    // lbd migrates again once the new program has replaced the old: the flows copied the
    // first time must not be copied, or counted, twice.
    let again = loader::migrate_previous_flows(&dir.0, reader)
        .unwrap_or_else(|e| panic!("second migration: {e}"));
    assert_eq!(again, 0, "flows copied by the second migration");
    assert_eq!(
        flows_of(reader),
        expected_flows,
        "after the second migration"
    );
    for (real_id, counts) in counted {
        assert_eq!(
            connections(reader, real_id),
            counts,
            "connections of real {real_id} after the second migration"
        );
    }

    loader::remove_retired_pins(&dir.0);
    assert!(
        !old_path.exists(),
        "{} is still pinned after remove_retired_pins",
        old_path.display()
    );
    let after_removal = loader::migrate_previous_flows(&dir.0, reader)
        .unwrap_or_else(|e| panic!("migration without the old table: {e}"));
    assert_eq!(after_removal, 0, "flows copied without an old table");
    assert_eq!(flows_of(reader), expected_flows, "after the old table went");
}
