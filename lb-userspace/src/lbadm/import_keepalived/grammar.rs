//! Which `{` opens a block, as keepalived's `process_stream` decides it (`lib/parser.c`): not
//! by counting braces but by keyword. A keyword that has a block in its context (a
//! `real_server` in a `virtual_server`) opens one, with or without the `{` that should
//! follow it; any other `{` is ignored, so what follows it is read in the enclosing block,
//! and the `}` meant for it closes that block. A `}` at the top level closes nothing and is
//! ignored; a block still open at the end of the config ends there. keepalived reports each
//! of these and carries on, so they are listed here, not fatal.
//!
//! The blocks are those keepalived 2.2 and later install (`install_sublevel`, root keywords
//! with keywords of their own, and the value blocks `alloc_value_block` reads), so nesting
//! is at most four deep (`virtual_server` → `real_server` → `HTTP_GET` → `url`).

use std::cell::Cell;

use super::{
    Skipped,
    parse::{Directive, Item, Location},
};

/// What a block holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// Directives, which may open blocks of their own.
    Keywords,
    /// Lines of values (`virtual_ipaddress`): a `{` in them is a value; the first `}` ends
    /// the block.
    Values,
}

/// The block `keyword` opens inside the block of `parent` (`""`: the top level), if any.
fn block_of(parent: &str, keyword: &str) -> Option<Block> {
    use Block::{Keywords, Values};
    let block = match (parent, keyword) {
        (
            "",
            "global_defs" | "vrrp_instance" | "vrrp_sync_group" | "vrrp_script"
            | "vrrp_track_process" | "track_file" | "vrrp_track_file" | "track_group"
            | "garp_group" | "bfd_instance" | "SSL" | "virtual_server",
        ) => Keywords,
        (
            "",
            "virtual_server_group"
            | "static_ipaddress"
            | "static_routes"
            | "static_rules"
            | "linkbeat_interfaces"
            | "interface_up_down_delays",
        ) => Values,
        ("global_defs", "notification_email") => Values,
        ("track_group", "group") | ("garp_group", "interfaces") => Values,
        (
            "vrrp_sync_group",
            "group" | "track_interface" | "track_script" | "track_file" | "track_process"
            | "track_bfd",
        ) => Values,
        ("vrrp_instance", "authentication" | "auth_hmac") => Keywords,
        (
            "vrrp_instance",
            "unicast_peer"
            | "track_interface"
            | "track_script"
            | "track_file"
            | "track_process"
            | "track_bfd"
            | "virtual_ipaddress"
            | "virtual_ipaddress_excluded"
            | "virtual_routes"
            | "virtual_rules",
        ) => Values,
        ("virtual_server", "real_server") => Keywords,
        (
            "real_server",
            "TCP_CHECK" | "HTTP_GET" | "SSL_GET" | "MISC_CHECK" | "SMTP_CHECK" | "DNS_CHECK"
            | "BFD_CHECK" | "UDP_CHECK" | "PING_CHECK" | "FILE_CHECK",
        ) => Keywords,
        ("HTTP_GET" | "SSL_GET", "url") | ("SMTP_CHECK", "host") => Keywords,
        _ => return None,
    };
    Some(block)
}

/// A block being read.
struct Frame {
    /// Its keyword and where that is written; `None` for the top level.
    owner: Option<(String, Location)>,
    block: Block,
    directives: Vec<Directive>,
    /// Its keyword was the last item: a `{` now is the block's own.
    opening: bool,
}

impl Frame {
    fn keyword(&self) -> &str {
        self.owner.as_ref().map_or("", |(keyword, _)| keyword)
    }
}

/// Items → the tree, and what keepalived would report about its braces.
pub(super) fn build(items: Vec<(Location, Item)>) -> (Vec<Directive>, Vec<Skipped>) {
    let mut notes = Vec::new();
    let mut stack = vec![Frame {
        owner: None,
        block: Block::Keywords,
        directives: Vec::new(),
        opening: false,
    }];
    for (at, item) in items {
        let frame = stack.last_mut().expect("the top level stays");
        if std::mem::take(&mut frame.opening) {
            if matches!(item, Item::Open) {
                continue;
            }
            let (keyword, opened) = frame.owner.as_ref().expect("a block has a keyword");
            notes.push(opened.skipped(
                keyword,
                "no `{` follows it; keepalived reads what follows as its block all the same, \
                 up to a `}`",
            ));
        }
        match item {
            Item::Words(mut words) => {
                let keyword = words.remove(0);
                let block = match frame.block {
                    Block::Keywords => block_of(frame.keyword(), &keyword),
                    Block::Values => None,
                };
                frame
                    .directives
                    .push(leaf(at.clone(), keyword.clone(), words));
                if let Some(block) = block {
                    stack.push(Frame {
                        owner: Some((keyword, at)),
                        block,
                        directives: Vec::new(),
                        opening: true,
                    });
                }
            }
            // keepalived hands a value block's `{` over as a value.
            Item::Open if frame.block == Block::Values => {
                frame.directives.push(leaf(at, "{".to_owned(), Vec::new()));
            }
            Item::Open => {
                let enclosing = match frame.keyword() {
                    "" => "the top level".to_owned(),
                    keyword => format!("the enclosing {keyword}"),
                };
                notes.push(at.skipped(
                    "{",
                    format!(
                        "opens no block here (only keepalived's block keywords do); keepalived \
                         ignores it, so what follows belongs to {enclosing}, and the next `}}` \
                         closes that"
                    ),
                ));
            }
            Item::Close if stack.len() == 1 => {
                notes.push(at.skipped("}", "closes no block; keepalived ignores it"));
            }
            Item::Close => close(&mut stack),
        }
    }
    while stack.len() > 1 {
        let frame = stack.last().expect("more than the top level");
        let (keyword, opened) = frame.owner.as_ref().expect("a block has a keyword");
        notes.push(opened.skipped(
            keyword,
            "its block is not closed; keepalived ends it at the end of the config",
        ));
        close(&mut stack);
    }
    let top = stack.pop().expect("the top level stays");
    (top.directives, notes)
}

fn leaf(at: Location, keyword: String, args: Vec<String>) -> Directive {
    Directive {
        at,
        keyword,
        args,
        block: None,
        read: Cell::new(false),
    }
}

/// Ends the innermost block: it becomes the block of the directive that opened it, the last
/// of the enclosing block.
fn close(stack: &mut Vec<Frame>) {
    let frame = stack.pop().expect("a block to close");
    let parent = stack.last_mut().expect("the top level stays");
    let owner = parent
        .directives
        .last_mut()
        .expect("a block opens after its directive");
    owner.block = Some(frame.directives);
}
