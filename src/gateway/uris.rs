//! Resource URIs on the aggregate endpoint: which server a URI goes to.
//!
//! - A URI goes to the server that listed it.
//! - A URI listed by more than one server is listed once per server as
//!   `mcpwatch://{server}/{uri}`, so each stays reachable; that form (or any
//!   URI so written) goes to `{server}` with `{uri}`.
//! - A URI no server listed goes to the server whose template matches it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// The explicit form's scheme and authority prefix.
pub(crate) const EXPLICIT: &str = "mcpwatch://";

/// Where listed URIs and templates came from.
#[derive(Debug, Default)]
pub(crate) struct UriRoutes(Mutex<Routes>);

#[derive(Debug, Default)]
struct Routes {
    resources: HashMap<String, Arc<str>>,
    templates: Vec<(Arc<str>, String)>,
}

/// `mcpwatch://{server}/{uri}`.
pub(crate) fn explicit(server: &str, uri: &str) -> String {
    format!("{EXPLICIT}{server}/{uri}")
}

impl UriRoutes {
    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a listing of `server`'s resources (replacing its earlier ones).
    pub(crate) fn listed_resources(&self, server: &Arc<str>, uris: &[String]) {
        let mut routes = self.lock();
        routes.resources.retain(|_, s| s != server);
        for uri in uris {
            routes.resources.insert(uri.clone(), server.clone());
        }
    }

    /// Records a listing of `server`'s templates (replacing its earlier ones).
    pub(crate) fn listed_templates(&self, server: &Arc<str>, templates: &[String]) {
        let mut routes = self.lock();
        routes.templates.retain(|(s, _)| s != server);
        routes
            .templates
            .extend(templates.iter().map(|t| (server.clone(), t.clone())));
    }

    /// The server and the URI to send it for `uri`; `None` when nothing routes it.
    pub(crate) fn route(
        &self,
        uri: &str,
        is_server: impl Fn(&str) -> Option<Arc<str>>,
    ) -> Option<(Arc<str>, String)> {
        if let Some(rest) = uri.strip_prefix(EXPLICIT) {
            let (server, original) = rest.split_once('/')?;
            return Some((is_server(server)?, original.to_owned()));
        }
        let routes = self.lock();
        if let Some(server) = routes.resources.get(uri) {
            return Some((server.clone(), uri.to_owned()));
        }
        routes
            .templates
            .iter()
            .find(|(_, template)| matches_template(template, uri))
            .map(|(server, _)| (server.clone(), uri.to_owned()))
    }
}

/// True if `uri` fits the RFC 6570 `template`: its literal parts in order,
/// each `{...}` expression standing for any run of characters.
pub(crate) fn matches_template(template: &str, uri: &str) -> bool {
    let mut literals = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        literals.push(&rest[..open]);
        match rest[open..].find('}') {
            Some(close) => rest = &rest[open + close + 1..],
            None => return false,
        }
    }
    literals.push(rest);
    let (Some(first), Some(last)) = (literals.first(), literals.last()) else {
        return false;
    };
    if literals.len() == 1 {
        return uri == *first;
    }
    if !uri.starts_with(first) || !uri[first.len()..].ends_with(last) {
        return false;
    }
    let mut at = first.len();
    let end = uri.len() - last.len();
    for literal in &literals[1..literals.len() - 1] {
        match uri[at..end].find(literal) {
            Some(found) => at += found + literal.len(),
            None => return false,
        }
    }
    at <= end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_their_literals_in_order() {
        assert!(matches_template(
            "test://template/{id}/data",
            "test://template/7/data"
        ));
        assert!(matches_template(
            "demo://resource/dynamic/text/{resourceId}",
            "demo://resource/dynamic/text/12"
        ));
        assert!(!matches_template(
            "test://template/{id}/data",
            "test://other/7/data"
        ));
        assert!(matches_template("file:///{+path}", "file:///a/b"));
        assert!(matches_template("plain://x", "plain://x"));
        assert!(!matches_template("plain://x", "plain://y"));
        assert!(!matches_template("bad://{oops", "bad://x"));
    }

    #[test]
    fn uris_go_to_their_lister_the_explicit_form_or_a_matching_template() {
        let routes = UriRoutes::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        let is_server = |s: &str| ["a", "b"].contains(&s).then(|| Arc::from(s));
        routes.listed_resources(&a, &["x://1".into()]);
        routes.listed_templates(&b, &["y://{n}".into()]);
        assert_eq!(
            routes.route("x://1", is_server),
            Some((a.clone(), "x://1".into()))
        );
        assert_eq!(
            routes.route("y://5", is_server),
            Some((b.clone(), "y://5".into()))
        );
        assert_eq!(
            routes.route(&explicit("b", "x://1"), is_server),
            Some((b, "x://1".into()))
        );
        assert_eq!(routes.route("z://9", is_server), None);
        assert_eq!(routes.route("mcpwatch://nobody/x://1", is_server), None);
    }
}
