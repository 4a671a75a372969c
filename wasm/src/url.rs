//! Node URLs: `redis://[user[:pass]@]host[:port][/db]`, `rediss://…` for TLS — the forms the
//! host's `Endpoint` accepts, parsed without `std`.
//!
//! User and password are percent-decoded; an IPv6 host is written in brackets; the port
//! defaults to 6379 and the database to 0.

use alloc::string::{String, ToString};
use alloc::vec::Vec;

/// A parsed node URL.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NodeUrl {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) database: u32,
}

/// Parses `text`; the error says what is wrong.
pub(crate) fn parse(text: &str) -> Result<NodeUrl, &'static str> {
    let (tls, rest) = if let Some(rest) = text.strip_prefix("redis://") {
        (false, rest)
    } else if let Some(rest) = text.strip_prefix("rediss://") {
        (true, rest)
    } else {
        return Err("the scheme is not redis:// or rediss://");
    };
    if rest.contains(['?', '#']) {
        return Err("query strings and fragments are not supported");
    }
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo), hostport),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (user, pass) = match info.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (info, None),
            };
            let user = Some(decode(user)?).filter(|u| !u.is_empty());
            (user, pass.map(decode).transpose()?)
        }
    };
    let (host, port) = if let Some(bracketed) = hostport.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 host lacks its ']'")?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or("junk after the IPv6 host")?),
        };
        (host, port)
    } else {
        match hostport.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("no host");
    }
    let port = match port {
        None => 6379,
        Some(p) => p
            .parse()
            .map_err(|_| "the port is not a number from 0 to 65535")?,
    };
    let database = match path {
        "" => 0,
        db => db
            .parse()
            .map_err(|_| "the path must be a database number, as in /2")?,
    };
    Ok(NodeUrl {
        tls,
        host: host.to_string(),
        port,
        username,
        password,
        database,
    })
}

/// Percent-decodes `text` as UTF-8.
fn decode(text: &str) -> Result<String, &'static str> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("a '%' escape is cut short")?;
            let hex = core::str::from_utf8(hex).map_err(|_| "a bad '%' escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "a bad '%' escape")?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the user or password is not UTF-8")
}

/// `text` with any password replaced by `***`, for messages.
pub(crate) fn redact(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((info, host)) => match info.split_once(':') {
            Some((user, _)) => alloc::format!("{scheme}://{user}:***@{host}{tail}"),
            None => text.to_string(),
        },
        None => text.to_string(),
    }
}
