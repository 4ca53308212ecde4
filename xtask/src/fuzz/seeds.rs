//! Each parser target's seed corpus, written fresh before a run from the project's own
//! fixtures: the example configs and README's YAML blocks, the VRRP captures' adverts, the
//! README's admin request lines and `lbadm` rules, the keepalived.conf test data. Generated
//! rather than committed, so the seeds follow the fixtures as they change and the repository
//! holds no copies of them.

use std::path::Path;

use anyhow::{Context as _, bail};

/// Writes `target`'s seeds into `directory` (emptied first); returns how many.
pub fn write(root: &Path, target: &str, directory: &Path) -> anyhow::Result<usize> {
    if directory.exists() {
        std::fs::remove_dir_all(directory)
            .with_context(|| format!("emptying {}", directory.display()))?;
    }
    std::fs::create_dir_all(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let readme = read_text(&root.join("README.md"))?;
    let seeds = match target {
        "config" => config(root, &readme)?,
        "vrrp_advert" => vrrp_adverts(root)?,
        "admin_request" => admin_requests(&readme),
        "restore_rules" => restore_rules(&readme),
        "keepalived_import" => keepalived(root)?,
        other => bail!("no seeds for fuzz target {other}"),
    };
    if seeds.is_empty() {
        bail!("no seeds found for fuzz target {target}: have the fixtures moved?");
    }
    for (index, seed) in seeds.iter().enumerate() {
        let path = directory.join(format!("seed-{index:03}"));
        std::fs::write(&path, seed).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(seeds.len())
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// examples/*.yaml and the README's ```yaml blocks.
fn config(root: &Path, readme: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(root.join("examples")).context("listing examples/")? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|extension| extension == "yaml")
        {
            seeds.push(std::fs::read(&path).with_context(|| format!("{}", path.display()))?);
        }
    }
    seeds.extend(fenced_blocks(readme, "yaml").map(String::into_bytes));
    Ok(seeds)
}

/// The README's fenced blocks of `language`, without their fences.
fn fenced_blocks<'a>(text: &'a str, language: &'a str) -> impl Iterator<Item = String> + 'a {
    let mut lines = text.lines();
    std::iter::from_fn(move || {
        lines.find(|line| line.trim() == format!("```{language}"))?;
        let block: Vec<&str> = lines
            .by_ref()
            .take_while(|line| line.trim() != "```")
            .collect();
        Some(block.join("\n") + "\n")
    })
}

/// The README's `echo '{"request": …}' | socat …` lines, `$svc` filled in, and the requests
/// without arguments.
fn admin_requests(readme: &str) -> Vec<Vec<u8>> {
    let service = r#"{"protocol": "tcp", "vip": "192.0.2.100", "port": 80}"#;
    let mut seeds: Vec<Vec<u8>> = readme
        .lines()
        .filter_map(|line| line.trim().strip_prefix("echo '"))
        .filter(|line| line.starts_with("{\"request\""))
        .filter_map(|line| line.split_once("' |").map(|(json, _)| json))
        .map(|json| format!("{}\n", json.replace(r#"'"$svc"'"#, service)).into_bytes())
        .collect();
    for request in ["list", "status", "connections", "config", "reload"] {
        seeds.push(format!("{{\"request\": \"{request}\"}}\n").into_bytes());
    }
    seeds.push(
        format!(
            "{{\"request\": \"changes\", \"edits\": [{{\"edit\": \"clear\"}}, {{\"edit\": \
             \"add_service\", \"service\": {service}}}]}}\n"
        )
        .into_bytes(),
    );
    seeds.push(br#"{"request": "dump", "service": null, "count": 10}"#.to_vec());
    seeds
}

/// The README's `lbadm -A/-E/-D/-a/-e/-d/-C` lines, each alone and all as one rules file,
/// and an ipvsadm-save file.
fn restore_rules(readme: &str) -> Vec<Vec<u8>> {
    let rules: Vec<&str> = readme
        .lines()
        .map(str::trim)
        .filter(|line| {
            ["-A ", "-E ", "-D ", "-a ", "-e ", "-d ", "-C"]
                .iter()
                .any(|verb| line.starts_with(&format!("lbadm {verb}")))
        })
        .collect();
    let mut seeds: Vec<Vec<u8>> = rules
        .iter()
        .map(|rule| format!("{rule}\n").into_bytes())
        .collect();
    seeds.push((rules.join("\n") + "\n").into_bytes());
    seeds.push(
        b"# ipvsadm-save\n-A -t 192.0.2.10:80 -s wrr -p 300 -M 255.255.255.0\n\
          -a -t 192.0.2.10:80 -r 192.0.2.11:80 -g -w 3\n\
          ipvsadm -a -t 192.0.2.10:80 -r 192.0.2.12:80 -g -w 1 -x 0 -y 0\n\
          -A -u [2001:db8::10]:53 -s rr\n\
          -a -u [2001:db8::10]:53 -r [2001:db8::11]:5353 -m -w 1\n--set 900 120 300\n"
            .to_vec(),
    );
    seeds
}

/// The importer's test data: keepalived.conf and the files it includes.
fn keepalived(root: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    let testdata = root.join("lb-userspace/src/lbadm/import_keepalived/testdata");
    let mut seeds =
        vec![std::fs::read(testdata.join("keepalived.conf")).context("keepalived.conf")?];
    for entry in std::fs::read_dir(testdata.join("conf.d")).context("listing conf.d")? {
        seeds.push(std::fs::read(entry?.path())?);
    }
    Ok(seeds)
}

/// The adverts of the VRRP captures, in the target's framing: an IPv4 packet after a 0
/// byte, or an IPv6 packet's source, destination and payload after a 1 byte.
fn vrrp_adverts(root: &Path) -> anyhow::Result<Vec<Vec<u8>>> {
    const IPPROTO_VRRP: u8 = 112;
    let testdata = root.join("lb-userspace/src/vrrp/packet/testdata");
    let mut seeds = Vec::new();
    for entry in std::fs::read_dir(&testdata).context("listing the VRRP captures")? {
        let path = entry?.path();
        if path.extension().is_none_or(|extension| extension != "pcap") {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        for frame in pcap_frames(&bytes).with_context(|| format!("{}", path.display()))? {
            let Some((ethertype, packet)) = frame.get(12..14).zip(frame.get(14..)) else {
                continue;
            };
            let seed = match ethertype {
                [0x08, 0x00] if packet.get(9) == Some(&IPPROTO_VRRP) => [&[0][..], packet].concat(),
                [0x86, 0xdd] if packet.get(6) == Some(&IPPROTO_VRRP) && packet.len() > 40 => {
                    [&[1][..], &packet[8..40], &packet[40..]].concat()
                }
                _ => continue,
            };
            if !seeds.contains(&seed) {
                seeds.push(seed);
            }
        }
    }
    // Adverts differ only in priority and checksum from one second to the next: a few of each
    // family are enough to start from.
    seeds.sort_by_key(|seed| seed[0]);
    let mut kept = Vec::new();
    for family in [0, 1] {
        kept.extend(
            seeds
                .iter()
                .filter(|seed| seed[0] == family)
                .take(8)
                .cloned(),
        );
    }
    Ok(kept)
}

/// The frames of a classic little-endian pcap file.
fn pcap_frames(bytes: &[u8]) -> anyhow::Result<Vec<&[u8]>> {
    let Some(mut rest) = bytes.get(24..) else {
        bail!("no pcap header");
    };
    let mut frames = Vec::new();
    while let Some(record) = rest.get(..16) {
        let included = u32::from_le_bytes(record[8..12].try_into().expect("4 bytes")) as usize;
        let Some(frame) = rest.get(16..16 + included) else {
            bail!("a frame of {included} bytes is cut short");
        };
        frames.push(frame);
        rest = &rest[16 + included..];
    }
    Ok(frames)
}
