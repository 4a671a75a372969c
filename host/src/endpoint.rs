//! Where a node is and how to log in: `redis://[user:pass@]host:port[/db]`, `rediss://…`,
//! and a Redis Cluster reached through seed nodes:
//! `redis+cluster://[user:pass@]host:port[,host:port…]` (`rediss+cluster://` for TLS), which
//! counts as one node of a lock; and a primary watched by Redis Sentinel:
//! `redis+sentinel://[user:pass@]host[:port][,host[:port]…]/service[/db]` (`rediss+sentinel://`
//! for TLS; sentinels listen on 26379 unless a port is given), one node of a lock too. The
//! login of a sentinel URL is the primary's; sentinels that need one of their own get it
//! from the query parameters `sentinel_password` and `sentinel_username` (redis-py's
//! `sentinel_kwargs`), the only query parameters read anywhere.
//!
//! Invariants: a parsed endpoint came from a URL with nothing this module would ignore (no
//! other query parameters, no fragment, a path that is empty or a database number in digits), so
//! what a user wrote is what is used; `Display` writes a URL that parses back to the same
//! node (an IPv6 host in brackets) and never the password.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// One Redis node's address and login.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `rediss://`: TLS.
    pub tls: bool,
    /// Host name or IP address.
    pub host: String,
    /// TCP port (6379 by default).
    pub port: u16,
    /// ACL user, when given.
    pub username: Option<String>,
    /// Password, when given.
    pub password: Option<String>,
    /// Database number (`/db`), 0 by default (always 0 for a cluster).
    pub database: u32,
    /// `redis+cluster://`: a Redis Cluster, of which `host:port` is the first seed node.
    pub cluster: bool,
    /// A cluster's further seed nodes (host, port), tried in order after the first; a
    /// sentinel group's further sentinels.
    pub more_seeds: Vec<(String, u16)>,
    /// `redis+sentinel://`: the service (master name) the sentinels at `host:port` and
    /// `more_seeds` watch; the node is that service's primary.
    pub sentinel: Option<String>,
    /// `?sentinel_username=`: the ACL user the sentinels are asked as.
    pub sentinel_username: Option<String>,
    /// `?sentinel_password=`: the sentinels' password (`requirepass` in their config).
    pub sentinel_password: Option<String>,
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The password never reaches logs.
        write!(f, "{self}")
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let cluster = if self.cluster {
            "+cluster"
        } else if self.sentinel.is_some() {
            "+sentinel"
        } else {
            ""
        };
        write!(f, "{scheme}{cluster}://")?;
        match (&self.username, &self.password) {
            (Some(user), Some(_)) => write!(f, "{user}:***@")?,
            (None, Some(_)) => write!(f, ":***@")?,
            (Some(user), None) => write!(f, "{user}@")?,
            (None, None) => {}
        }
        write!(f, "{}", self.address())?;
        for (host, port) in &self.more_seeds {
            write!(f, ",{}", host_port(host, *port))?;
        }
        if let Some(service) = &self.sentinel {
            write!(f, "/{service}")?;
        }
        if self.database != 0 {
            write!(f, "/{}", self.database)?;
        }
        match (&self.sentinel_username, &self.sentinel_password) {
            (Some(user), Some(_)) => {
                write!(f, "?sentinel_username={user}&sentinel_password=***")?;
            }
            (_, Some(_)) => write!(f, "?sentinel_password=***")?,
            _ => {}
        }
        Ok(())
    }
}

impl Endpoint {
    /// `host:port`, an IPv6 host in brackets (`[::1]:6379`): the server this endpoint
    /// reaches, as a user writes it.
    #[must_use]
    pub fn address(&self) -> String {
        host_port(&self.host, self.port)
    }

    /// Every seed node of a cluster (host, port), the first one first; a plain node's own.
    #[must_use]
    pub fn seeds(&self) -> Vec<(String, u16)> {
        let mut seeds = vec![(self.host.clone(), self.port)];
        seeds.extend(self.more_seeds.iter().cloned());
        seeds
    }

    /// This endpoint's login and TLS at another server: a cluster's seed or primary.
    #[must_use]
    pub fn at(&self, host: &str, port: u16) -> Endpoint {
        Endpoint {
            tls: self.tls,
            host: host.to_owned(),
            port,
            username: self.username.clone(),
            password: self.password.clone(),
            database: 0,
            cluster: false,
            more_seeds: Vec::new(),
            sentinel: None,
            sentinel_username: None,
            sentinel_password: None,
        }
    }

    /// A sentinel group's primary at `host:port`: this endpoint's login, TLS and database.
    #[must_use]
    pub fn primary_at(&self, host: &str, port: u16) -> Endpoint {
        Endpoint {
            database: self.database,
            ..self.at(host, port)
        }
    }

    /// Whether `other` names the same server in the same words: one host (case aside) and
    /// port. The database, login and TLS do not matter: they are one server's keyspaces and
    /// doors, and a lock's quorum counts servers.
    #[must_use]
    /// Two sentinel URLs name the same node only when they name one service too: one group
    /// of sentinels commonly watches several primaries.
    pub fn same_address(&self, other: &Endpoint) -> bool {
        if self.sentinel != other.sentinel {
            return false;
        }
        self.port == other.port && self.host.eq_ignore_ascii_case(&other.host)
    }
}

impl FromStr for Endpoint {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::BadUrl {
            url: redact(text),
            why: why.to_owned(),
        };
        if let Some((scheme, rest)) = text.split_once("://")
            && scheme.ends_with("+cluster")
        {
            return parse_cluster(scheme, rest).map_err(|why| bad(&why));
        }
        if let Some((scheme, rest)) = text.split_once("://")
            && scheme.ends_with("+sentinel")
        {
            return parse_sentinel(scheme, rest).map_err(|why| bad(&why));
        }
        let url = url::Url::parse(text).map_err(|e| bad(&e.to_string()))?;
        let tls = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(bad(&format!(
                    "scheme '{other}' is not redis://, rediss://, redis+cluster://, rediss+cluster://, redis+sentinel:// or rediss+sentinel://"
                )));
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let decode = |s: &str| {
            url::form_urlencoded::parse(format!("x={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        let username = Some(url.username()).filter(|u| !u.is_empty()).map(decode);
        let password = url.password().map(decode);
        // Options a URL may carry elsewhere (`?timeout=…`, `?protocol=…`) are not read here:
        // refusing them says so, where ignoring them would run with settings the user
        // believes are different.
        if let Some((key, _)) = url.query_pairs().next() {
            return Err(bad(&format!(
                "unknown query parameter '{key}' (none are read: set timeouts and TLS with the command's options or ConnectOptions)"
            )));
        }
        if url.query().is_some() {
            return Err(bad("unexpected '?' (no query parameters are read)"));
        }
        if url.fragment().is_some() {
            return Err(bad("unexpected '#' fragment"));
        }
        let database = match url.path().strip_prefix('/').unwrap_or(url.path()) {
            "" => 0,
            db if db.bytes().all(|b| b.is_ascii_digit()) => db
                .parse()
                .map_err(|_| bad("the database number is too large"))?,
            db => {
                return Err(bad(&format!(
                    "the path '/{db}' is not a database number (write /2 for database 2)"
                )));
            }
        };
        Ok(Endpoint {
            tls,
            host,
            port: url.port().unwrap_or(6379),
            username,
            password,
            database,
            cluster: false,
            more_seeds: Vec::new(),
            sentinel: None,
            sentinel_username: None,
            sentinel_password: None,
        })
    }
}

/// `host:port`, an IPv6 host in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A multi-host URL (cluster seeds, sentinels) reads no fragment and no query parameters:
/// refuses them, saying what to write instead (`fragment_hint` follows the fragment's
/// message, `form` the query parameter's).
fn refuse_fragment_and_query(rest: &str, fragment_hint: &str, form: &str) -> Result<(), String> {
    if rest.contains('#') {
        return Err(format!("unexpected '#' fragment{fragment_hint}"));
    }
    if let Some((_, query)) = rest.split_once('?') {
        let key = query.split(['=', '&']).next().unwrap_or_default();
        return Err(if key.is_empty() {
            "unexpected '?' (no query parameters are read)".into()
        } else {
            format!("unknown query parameter '{key}' (none are read: {form})")
        });
    }
    Ok(())
}

/// Reads what follows `redis+cluster://` / `rediss+cluster://`: an optional login, then
/// comma-separated seed nodes, each `host[:port]` (6379 by default; an IPv6 host in
/// brackets), then nothing or `/0` — a cluster has database 0 only. Query parameters
/// (redis-py's and go-redis's `?addr=`, timeouts) are refused, as for single nodes.
fn parse_cluster(scheme: &str, rest: &str) -> Result<Endpoint, String> {
    let tls = match scheme {
        "redis+cluster" => false,
        "rediss+cluster" => true,
        other => {
            return Err(format!(
                "scheme '{other}' is not redis+cluster:// or rediss+cluster://"
            ));
        }
    };
    refuse_fragment_and_query(rest, "", "list the seed nodes as host:port,host:port")?;
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    match path {
        "" | "/" | "/0" => {}
        db if db[1..].bytes().all(|b| b.is_ascii_digit()) => {
            return Err(format!("a cluster has only database 0, not '{}'", &db[1..]));
        }
        db => return Err(format!("the path '{db}' is not a database number")),
    }
    let (username, password, mut seeds) = login_and_hosts(authority, 6379, "seed node")?;
    if seeds.is_empty() {
        return Err("no seed nodes (write redis+cluster://host:port[,host:port…])".into());
    }
    let (host, port) = seeds.remove(0);
    Ok(Endpoint {
        tls,
        host,
        port,
        username,
        password,
        database: 0,
        cluster: true,
        more_seeds: seeds,
        sentinel: None,
        sentinel_username: None,
        sentinel_password: None,
    })
}

/// The login and the comma-separated `host[:port]` list of a cluster's or a sentinel group's
/// URL authority; `what` names the hosts in errors. Hosts given twice are refused.
#[allow(clippy::type_complexity)]
fn login_and_hosts(
    authority: &str,
    default_port: u16,
    what: &str,
) -> Result<(Option<String>, Option<String>, Vec<(String, u16)>), String> {
    let (login, hosts) = match authority.rsplit_once('@') {
        Some((login, hosts)) => (Some(login), hosts),
        None => (None, authority),
    };
    let decode = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (username, password) = match login {
        None => (None, None),
        Some(login) => match login.split_once(':') {
            Some((user, pass)) => (
                Some(user).filter(|u| !u.is_empty()).map(decode),
                Some(decode(pass)),
            ),
            None => (Some(login).filter(|u| !u.is_empty()).map(decode), None),
        },
    };
    if hosts.is_empty() {
        return Ok((username, password, Vec::new()));
    }
    let mut seeds = Vec::new();
    for seed in hosts.split(',') {
        seeds.push(parse_seed(seed, default_port)?);
    }
    for (i, seed) in seeds.iter().enumerate() {
        if seeds[..i]
            .iter()
            .any(|s| s.1 == seed.1 && s.0.eq_ignore_ascii_case(&seed.0))
        {
            return Err(format!(
                "the {what} {} is given twice",
                host_port(&seed.0, seed.1)
            ));
        }
    }
    Ok((username, password, seeds))
}

/// Reads what follows `redis+sentinel://` / `rediss+sentinel://`: an optional login (the
/// primary's), comma-separated sentinels `host[:port]` (26379 by default), then
/// `/service` and optionally `/db`. The form of Lettuce's and Spring's sentinel URLs, with
/// the service in the path where redis-py takes it as an argument. The sentinels' own login
/// is read from `?sentinel_password=…[&sentinel_username=…]`; any other query parameter is
/// refused, as for single nodes.
fn parse_sentinel(scheme: &str, rest: &str) -> Result<Endpoint, String> {
    let tls = match scheme {
        "redis+sentinel" => false,
        "rediss+sentinel" => true,
        other => {
            return Err(format!(
                "scheme '{other}' is not redis+sentinel:// or rediss+sentinel://"
            ));
        }
    };
    let (rest, query) = match rest.split_once('?') {
        Some((rest, query)) => (rest, Some(query)),
        None => (rest, None),
    };
    refuse_fragment_and_query(
        rest,
        " (write the service as the path: /mymaster)",
        "write redis+sentinel://host:port,host:port/service[/db]",
    )?;
    if query.is_some_and(|q| q.contains('#')) {
        return Err("unexpected '#' fragment (write the service as the path: /mymaster)".into());
    }
    let (sentinel_username, sentinel_password) = sentinel_login(query)?;
    let (authority, path) = match rest.find('/') {
        Some(at) => rest.split_at(at),
        None => (rest, ""),
    };
    let (username, password, mut sentinels) =
        login_and_hosts(authority, distlock_core::SENTINEL_PORT, "sentinel")?;
    if sentinels.is_empty() {
        return Err("no sentinels (write redis+sentinel://host:port[,host:port…]/service)".into());
    }
    if sentinels.len() > distlock_core::MAX_SENTINELS {
        return Err(format!(
            "{} sentinels given; at most {} are asked",
            sentinels.len(),
            distlock_core::MAX_SENTINELS
        ));
    }
    let mut parts = path.trim_start_matches('/').split('/');
    let service = parts.next().unwrap_or_default();
    if service.is_empty() {
        return Err(
            "no service name (write redis+sentinel://host:port[,host:port…]/service, the name the sentinels monitor)"
                .into(),
        );
    }
    if !service
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!(
            "the service name '{service}' is not a sentinel master name (letters, digits, '-', '_', '.')"
        ));
    }
    let database = match (parts.next(), parts.next()) {
        (None | Some(""), None) => 0,
        (Some(db), None) if db.bytes().all(|b| b.is_ascii_digit()) => db
            .parse()
            .map_err(|_| "the database number is too large".to_string())?,
        _ => {
            return Err(format!(
                "the path '{path}' is not /service or /service/db (a database number)"
            ));
        }
    };
    let (host, port) = sentinels.remove(0);
    Ok(Endpoint {
        tls,
        host,
        port,
        username,
        password,
        database,
        cluster: false,
        more_seeds: sentinels,
        sentinel: Some(service.to_owned()),
        sentinel_username,
        sentinel_password,
    })
}

/// The sentinels' login from a sentinel URL's query: `sentinel_password` (required for a
/// login) and `sentinel_username`, each at most once and not empty; nothing else.
#[allow(clippy::type_complexity)]
fn sentinel_login(query: Option<&str>) -> Result<(Option<String>, Option<String>), String> {
    let Some(query) = query else {
        return Ok((None, None));
    };
    let (mut username, mut password) = (None, None);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "sentinel_password" => &mut password,
            "sentinel_username" => &mut username,
            "" => return Err("unexpected '?' without a query parameter".into()),
            other => {
                return Err(format!(
                    "unknown query parameter '{other}' (only sentinel_password and sentinel_username are read: write redis+sentinel://host:port,host:port/service[/db][?sentinel_password=…])"
                ));
            }
        };
        if slot.is_some() {
            return Err(format!("the query parameter '{key}' is given twice"));
        }
        let value: String = url::form_urlencoded::parse(format!("x={value}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        if value.is_empty() {
            return Err(format!("the query parameter '{key}' is empty"));
        }
        *slot = Some(value);
    }
    if username.is_some() && password.is_none() {
        return Err("sentinel_username is given without sentinel_password".into());
    }
    Ok((username, password))
}

/// One seed node, `host[:port]` or `[v6]:port`; `default_port` when none is given.
fn parse_seed(seed: &str, default_port: u16) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = seed.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("the seed '{seed}' has no closing ']'"))?;
        match after {
            "" => (host, None),
            port => (
                host,
                Some(port.strip_prefix(':').ok_or_else(|| {
                    format!("the seed '{seed}' has something after ']' that is not :port")
                })?),
            ),
        }
    } else {
        match seed.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (seed, None),
        }
    };
    if host.is_empty() {
        return Err(format!("an empty host in the seed list ('{seed}')"));
    }
    if host.contains(['/', '@', ' ']) {
        return Err(format!("the host '{host}' is not a host name or address"));
    }
    let port = match port {
        None => default_port,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| format!("the port '{port}' of seed '{seed}' is not a port (1-65535)"))?,
    };
    Ok((host.to_owned(), port))
}

/// The URL with any password replaced, for error messages.
fn redact(text: &str) -> String {
    let hidden = redact_query(text);
    let text = hidden.as_str();
    if let Some((scheme, rest)) = text.split_once("://")
        && (scheme.ends_with("+cluster") || scheme.ends_with("+sentinel"))
    {
        // The login is everything before the last '@' of the seed list.
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if let Some((login, _)) = authority.rsplit_once('@')
            && let Some((user, _)) = login.split_once(':')
        {
            return text.replacen(login, &format!("{user}:***"), 1);
        }
        return text.to_owned();
    }
    match url::Url::parse(text) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("***"));
            url.to_string()
        }
        _ => text.to_owned(),
    }
}

/// `text` with the value of every query parameter replaced by `***`: the name says what is
/// wrong, and a value may be a password (`sentinel_password`, or a mistyped name for it).
fn redact_query(text: &str) -> String {
    let Some((before, after)) = text.split_once('?') else {
        return text.to_owned();
    };
    let (query, fragment) = match after.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (after, None),
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) => format!("{key}=***"),
            None => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{before}?{}", pairs.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_users_write() {
        let e: Endpoint = "redis://localhost".parse().unwrap();
        assert_eq!(
            (e.tls, e.host.as_str(), e.port, e.database),
            (false, "localhost", 6379, 0)
        );
        let e: Endpoint = "rediss://app:p%40ss@10.0.0.1:6380/3".parse().unwrap();
        assert!(e.tls);
        assert_eq!(e.username.as_deref(), Some("app"));
        assert_eq!(e.password.as_deref(), Some("p@ss"));
        assert_eq!((e.port, e.database), (6380, 3));
        let e: Endpoint = "redis://:secret@[::1]:7000".parse().unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.username, None);
        assert_eq!(e.password.as_deref(), Some("secret"));
    }

    #[test]
    fn errors_say_what_is_wrong_and_hide_the_password() {
        let err = "http://u:hunter2@h"
            .parse::<Endpoint>()
            .unwrap_err()
            .to_string();
        assert!(err.contains("scheme 'http'"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
        assert!("redis://h/x".parse::<Endpoint>().is_err());
        assert!("not a url".parse::<Endpoint>().is_err());
        let shown = "redis://u:hunter2@h:1".parse::<Endpoint>().unwrap();
        assert!(!format!("{shown} {shown:?}").contains("hunter2"));
    }

    #[test]
    fn ipv6_hosts_print_in_brackets() {
        let e: Endpoint = "redis://[::1]:7000/2".parse().unwrap();
        assert_eq!(e.to_string(), "redis://[::1]:7000/2");
        assert_eq!(e.address(), "[::1]:7000");
        let again: Endpoint = e.to_string().parse().unwrap();
        assert_eq!(again, e);
        let e: Endpoint = "rediss://u:pw@[fd00::2]".parse().unwrap();
        assert_eq!(format!("{e:?}"), "rediss://u:***@[fd00::2]:6379");
        let e: Endpoint = "redis://127.0.0.1:7000".parse().unwrap();
        assert_eq!(e.address(), "127.0.0.1:7000");
    }

    #[test]
    fn query_parameters_and_odd_paths_are_refused() {
        for (url, says) in [
            (
                "redis://h:1/0?timeout=1",
                "unknown query parameter 'timeout'",
            ),
            (
                "redis://h:1?protocol=3",
                "unknown query parameter 'protocol'",
            ),
            ("redis://h:1/?", "unexpected '?'"),
            ("redis://h:1/0#x", "fragment"),
            ("redis://h:1/+1", "'/+1' is not a database number"),
            ("redis://h:1/0/1", "'/0/1' is not a database number"),
            ("redis://h:1/db0", "'/db0' is not a database number"),
            ("redis://h:1/99999999999", "too large"),
        ] {
            let err = url.parse::<Endpoint>().unwrap_err();
            assert!(matches!(err, Error::BadUrl { .. }), "{url}: {err:?}");
            assert!(err.to_string().contains(says), "{url}: {err}");
        }
        for (url, db) in [
            ("redis://h:1/", 0),
            ("redis://h:1/15", 15),
            ("redis://h:1", 0),
        ] {
            assert_eq!(url.parse::<Endpoint>().unwrap().database, db, "{url}");
        }
    }

    #[test]
    fn cluster_urls_list_seeds_and_count_as_one_node() {
        let e: Endpoint = "redis+cluster://u:p%40ss@10.0.0.1:7000,node-b,[::1]:7002"
            .parse()
            .unwrap();
        assert!(e.cluster && !e.tls);
        assert_eq!(
            e.seeds(),
            vec![
                ("10.0.0.1".to_owned(), 7000),
                ("node-b".to_owned(), 6379),
                ("::1".to_owned(), 7002)
            ]
        );
        assert_eq!(
            (e.username.as_deref(), e.password.as_deref()),
            (Some("u"), Some("p@ss"))
        );
        assert_eq!(
            e.to_string(),
            "redis+cluster://u:***@10.0.0.1:7000,node-b:6379,[::1]:7002"
        );
        let e: Endpoint = "rediss+cluster://h:1/0".parse().unwrap();
        assert!(e.cluster && e.tls);
        assert_eq!(e.at("x", 2).to_string(), "rediss://x:2");
        let again: Endpoint = "redis+cluster://a:1,b:2".parse().unwrap();
        assert_eq!(again.to_string().parse::<Endpoint>().unwrap(), again);
    }

    #[test]
    fn bad_cluster_urls_say_what_is_wrong_and_hide_the_password() {
        for (url, says) in [
            ("redis+cluster://", "no seed nodes"),
            ("redis+cluster://u:pw@", "no seed nodes"),
            ("redis+cluster://a:1,,b:2", "empty host"),
            ("redis+cluster://:7000", "empty host"),
            ("redis+cluster://a:70000", "not a port"),
            ("redis+cluster://a:0", "not a port"),
            ("redis+cluster://a:x", "not a port"),
            ("redis+cluster://a:1/2", "only database 0"),
            ("redis+cluster://a:1/db", "not a database number"),
            (
                "redis+cluster://a:1?addr=b:2",
                "unknown query parameter 'addr'",
            ),
            (
                "redis+cluster://a:1/0?timeout=1",
                "unknown query parameter 'timeout'",
            ),
            ("redis+cluster://a:1#x", "fragment"),
            ("redis+cluster://a:1,A:1", "given twice"),
            ("redis+cluster://[::1:1", "no closing"),
            ("redis+sentinel+cluster://a:1", "not redis+cluster"),
            ("redis+cluster://u:hunter2@a:1/5", "only database 0"),
        ] {
            let err = url.parse::<Endpoint>().unwrap_err();
            assert!(matches!(err, Error::BadUrl { .. }), "{url}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(says), "{url}: {text}");
            assert!(!text.contains("hunter2"), "{url}: {text}");
        }
    }

    #[test]
    fn the_same_address_ignores_case_database_and_login() {
        let a: Endpoint = "redis://Redis-A:7000/1".parse().unwrap();
        let b: Endpoint = "rediss://u:p@redis-a:7000/2".parse().unwrap();
        let c: Endpoint = "redis://redis-a:7001".parse().unwrap();
        assert!(a.same_address(&b));
        assert!(!a.same_address(&c));
    }

    #[test]
    fn sentinel_urls_list_sentinels_and_name_a_service() {
        let e: Endpoint = "redis+sentinel://:p%40ss@s1:26380,s2,[::1]/mymaster/2"
            .parse()
            .unwrap();
        assert_eq!(e.sentinel.as_deref(), Some("mymaster"));
        assert!(!e.tls && !e.cluster);
        assert_eq!(
            e.seeds(),
            vec![
                ("s1".to_owned(), 26380),
                ("s2".to_owned(), 26379),
                ("::1".to_owned(), 26379)
            ]
        );
        assert_eq!((e.password.as_deref(), e.database), (Some("p@ss"), 2));
        assert_eq!(
            e.to_string(),
            "redis+sentinel://:***@s1:26380,s2:26379,[::1]:26379/mymaster/2"
        );
        assert_eq!(
            e.to_string()
                .replace("***", "p%40ss")
                .parse::<Endpoint>()
                .unwrap(),
            e
        );
        let primary = e.primary_at("10.0.0.5", 6379);
        assert_eq!(primary.to_string(), "redis://:***@10.0.0.5:6379/2");
        let tls: Endpoint = "rediss+sentinel://s1/cache".parse().unwrap();
        assert!(tls.tls);
        assert_eq!(tls.to_string(), "rediss+sentinel://s1:26379/cache");
        // One group of sentinels watching two services: two nodes, not one given twice.
        let other: Endpoint = "redis+sentinel://s1:26380/other".parse().unwrap();
        assert!(!e.same_address(&other));
        let same: Endpoint = "redis+sentinel://S1:26380/mymaster".parse().unwrap();
        assert!(e.same_address(&same));
        // The sentinels' own login, apart from the primary's, hidden when shown.
        let login: Endpoint =
            "redis+sentinel://u:pw@s1/m/2?sentinel_password=s%2Bc%40t&sentinel_username=watcher"
                .parse()
                .unwrap();
        assert_eq!(login.sentinel_password.as_deref(), Some("s+c@t"));
        assert_eq!(login.sentinel_username.as_deref(), Some("watcher"));
        assert_eq!(login.password.as_deref(), Some("pw"));
        assert_eq!(
            login.to_string(),
            "redis+sentinel://u:***@s1:26379/m/2?sentinel_username=watcher&sentinel_password=***"
        );
        let primary = login.primary_at("10.0.0.5", 6379);
        assert_eq!(
            primary.sentinel_password, None,
            "the primary gets its own login only"
        );
    }

    #[test]
    fn bad_sentinel_urls_say_what_is_wrong_and_hide_the_password() {
        for (url, says) in [
            ("redis+sentinel://", "no sentinels"),
            ("redis+sentinel:///mymaster", "no sentinels"),
            ("redis+sentinel://u:hunter2@/mymaster", "no sentinels"),
            ("redis+sentinel://s1:26379", "no service name"),
            ("redis+sentinel://s1:26379/", "no service name"),
            (
                "redis+sentinel://s1/my master",
                "not a sentinel master name",
            ),
            ("redis+sentinel://s1/m/x", "not /service or /service/db"),
            ("redis+sentinel://s1/m/1/2", "not /service or /service/db"),
            (
                "redis+sentinel://s1,s1:26379/m",
                "sentinel s1:26379 is given twice",
            ),
            ("redis+sentinel://s1:0/m", "not a port"),
            ("redis+sentinel://s1/m?db=1", "unknown query parameter 'db'"),
            ("redis+sentinel://s1#m", "fragment"),
            ("rediss+sentinel+x://s1/m", "not redis"),
            ("redis+sentinel://u:hunter2@s1", "no service name"),
            (
                "redis+sentinel://s1/m?sentinel_password=hunter2&sentinel_password=x",
                "'sentinel_password' is given twice",
            ),
            ("redis+sentinel://s1/m?sentinel_password=", "is empty"),
            ("redis+sentinel://s1/m?sentinel_password", "is empty"),
            (
                "redis+sentinel://s1/m?sentinel_username=w",
                "sentinel_username is given without sentinel_password",
            ),
            ("redis+sentinel://s1/m?", "without a query parameter"),
            (
                "redis+sentinel://s1/m?sentinel_password=hunter2&timeout=1",
                "unknown query parameter 'timeout'",
            ),
            (
                "redis+sentinel://s1/m?sentinel_password=hunter2#x",
                "fragment",
            ),
            // The sentinels' login is the group's, never a cluster's or a server's.
            (
                "redis+cluster://s1?sentinel_password=hunter2",
                "unknown query parameter 'sentinel_password'",
            ),
            (
                "redis://s1?sentinel_password=hunter2",
                "unknown query parameter 'sentinel_password'",
            ),
        ] {
            let err = url.parse::<Endpoint>().unwrap_err();
            assert!(matches!(err, Error::BadUrl { .. }), "{url}: {err:?}");
            let text = err.to_string();
            assert!(text.contains(says), "{url}: {text}");
            assert!(!text.contains("hunter2"), "{url}: {text}");
        }
    }
}
