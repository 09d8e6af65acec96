//! Route matching, one matcher for every server and the gateway:
//! [`PathPattern`] (segments that are literal or `{name}`, any one non-empty
//! segment, and an optional trailing `*` for whatever follows) matches paths;
//! [`Router`] finds the row of a server's route table (a `const` array of
//! rows, each with a method and a template) for a request: 404 when no
//! template fits the path, 405 with `Allow` when one fits but not with that
//! method. The gateway's access rules are a method and a [`PathPattern`].
//!
//! ```
//! use service_kit::routing::PathPattern;
//!
//! let one: PathPattern = "/api/orders/{id}".parse().unwrap();
//! assert_eq!(one.fit("/api/orders/7".split('/').skip(1)), Some(Some("7")));
//! assert_eq!(one.fit("/api/orders/7/status".split('/').skip(1)), None);
//! let rest: PathPattern = "/api/products*".parse().unwrap();
//! assert!(rest.fit("/api/products/7/x".split('/').skip(1)).is_some());
//! assert!("/api/*/x".parse::<PathPattern>().is_err(), "`*` only at the end");
//! ```

use std::borrow::Cow;
use std::str::FromStr;
use std::sync::OnceLock;

use crate::Problem;

/// Most segments a template may have; a longer path is 404 without looking
/// at the table (and matching needs no allocation).
pub const PATH_SEGMENTS_MAX: usize = 16;

/// A row of a route table, as the matcher sees it.
pub trait RouteSpec: Sync + 'static {
    /// The HTTP method, e.g. `GET`.
    fn method(&self) -> &'static str;
    /// The path template, e.g. `/api/orders/{id}/status`: at most one
    /// `{...}` segment and [`PATH_SEGMENTS_MAX`] segments.
    fn template(&self) -> &'static str;
}

/// A row of a server's route table: which route (`I`, the server's enum),
/// its method and template, who may call it (`A`, the server's access
/// levels), and whether it counts against the per-client rate limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Route<I: 'static, A: 'static> {
    /// The route.
    pub id: I,
    /// HTTP method.
    pub method: &'static str,
    /// Path template; `{name}` segments match any one segment.
    pub template: &'static str,
    /// Who may call it.
    pub access: A,
    /// True when the route counts against the per-client rate limit.
    pub rate_limited: bool,
}

impl<I: Sync + 'static, A: Sync + 'static> RouteSpec for Route<I, A> {
    fn method(&self) -> &'static str {
        self.method
    }

    fn template(&self) -> &'static str {
        self.template
    }
}

/// A matched row and the value of its path parameter, if it has one.
#[derive(Debug)]
pub struct Matched<'p, R: 'static> {
    /// The row.
    pub route: &'static R,
    /// The `{...}` segment's text.
    pub param: Option<&'p str>,
}

impl<R> Clone for Matched<'_, R> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<R> Copy for Matched<'_, R> {}

/// One segment of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(Cow<'static, str>),
    Param,
}

/// A path pattern: `/`-separated segments, each a literal or `{name}` (any
/// one non-empty segment), optionally followed by `*` (whatever follows,
/// including nothing). A trailing `/` is ignored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    parts: Vec<Part>,
    rest: bool,
}

/// A path pattern that does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid path pattern {0:?}: expected `/` then segments that are literal or {{name}}, `*` only at the end")]
pub struct PatternError(pub String);

impl FromStr for PathPattern {
    type Err = PatternError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(Cow::Owned(text.to_owned())).map_err(|_| PatternError(text.to_owned()))
    }
}

impl PathPattern {
    fn parse(text: Cow<'_, str>) -> Result<Self, ()> {
        let path = text.strip_prefix('/').ok_or(())?;
        let (path, rest) = match path.strip_suffix('*') {
            Some(p) => (p, true),
            None => (path, false),
        };
        let trimmed = path.trim_end_matches('/');
        let parts = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed
                .split('/')
                .map(|seg| match seg {
                    s if s.len() >= 2 && s.starts_with('{') && s.ends_with('}') => Ok(Part::Param),
                    s if s.is_empty() || s.contains(['*', '{', '}']) => Err(()),
                    s => Ok(Part::Literal(Cow::Owned(s.to_owned()))),
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        if parts.len() > PATH_SEGMENTS_MAX {
            return Err(());
        }
        Ok(Self { parts, rest })
    }

    /// `{name}` segments.
    pub fn params(&self) -> usize {
        self.parts.len() - self.literals()
    }

    /// Literal segments: the more, the more specific the pattern.
    pub fn literals(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| matches!(p, Part::Literal(_)))
            .count()
    }

    /// Whether the pattern fits a path given as its segments (the path
    /// without its leading `/`, split on `/`): `Some` with the text of its
    /// (last) `{name}` segment, or `Some(None)` for a pattern without one;
    /// `None` when it does not fit. Allocates nothing.
    pub fn fit<'p>(&self, mut segments: impl Iterator<Item = &'p str>) -> Option<Option<&'p str>> {
        let mut param = None;
        for part in &self.parts {
            let seg = segments.next()?;
            match part {
                Part::Param if !seg.is_empty() => param = Some(seg),
                Part::Literal(lit) if lit == seg => {}
                _ => return None,
            }
        }
        (self.rest || segments.next().is_none()).then_some(param)
    }
}

/// A template split into segments.
#[derive(Debug)]
struct Parsed<R: 'static> {
    route: &'static R,
    pattern: PathPattern,
    literals: usize,
}

/// The matcher of one route table. Built in a `static` with [`Router::new`];
/// the templates are parsed on the first request.
#[derive(Debug)]
pub struct Router<R: 'static> {
    routes: &'static [R],
    parsed: OnceLock<Vec<Parsed<R>>>,
}

impl<R: RouteSpec> Router<R> {
    /// The matcher of `routes`.
    pub const fn new(routes: &'static [R]) -> Self {
        Self {
            routes,
            parsed: OnceLock::new(),
        }
    }

    /// The table.
    pub fn routes(&self) -> &'static [R] {
        self.routes
    }

    fn parsed(&self) -> &[Parsed<R>] {
        self.parsed
            .get_or_init(|| self.routes.iter().map(parse).collect())
    }

    /// Finds the row for `method` and `path`: among the templates that fit
    /// the path, the one with the most literal segments (the first in the
    /// table on a tie) decides. Allocates nothing unless it fails.
    ///
    /// # Errors
    /// 404 `route_not_found` when no template fits the path; 405
    /// `method_not_allowed` (with `Allow`) when the best template has no row
    /// with `method`. `HEAD` is answered by the `GET` row.
    pub fn find<'p>(&self, method: &str, path: &'p str) -> Result<Matched<'p, R>, Problem> {
        let Some(rest) = path.strip_prefix('/') else {
            return Err(Problem::route_not_found(path));
        };
        let mut buf = [""; PATH_SEGMENTS_MAX];
        let mut len = 0;
        for seg in rest.split('/') {
            if len == PATH_SEGMENTS_MAX {
                return Err(Problem::route_not_found(path));
            }
            buf[len] = seg;
            len += 1;
        }
        let segments = &buf[..len];
        let mut best: Option<(usize, &'static str)> = None;
        let mut hit: Option<Matched<'p, R>> = None;
        for p in self.parsed() {
            if best.is_some_and(|(b, _)| p.literals < b) {
                continue;
            }
            let Some(param) = p.pattern.fit(segments.iter().copied()) else {
                continue;
            };
            if best.is_none_or(|(b, _)| p.literals > b) {
                best = Some((p.literals, p.route.template()));
                hit = None;
            }
            let same_template = best.is_some_and(|(_, t)| t == p.route.template());
            if same_template && hit.is_none() && answers(p.route.method(), method) {
                hit = Some(Matched {
                    route: p.route,
                    param,
                });
            }
        }
        if let Some(m) = hit {
            return Ok(m);
        }
        let Some((_, template)) = best else {
            return Err(Problem::route_not_found(path));
        };
        let mut allowed: Vec<&str> = self
            .routes
            .iter()
            .filter(|r| r.template() == template)
            .map(RouteSpec::method)
            .collect();
        if allowed.contains(&"GET") {
            allowed.push("HEAD");
        }
        Err(Problem::method_not_allowed(&allowed))
    }
}

/// Whether a row for `row_method` answers a request with `method`: its own
/// method, and `HEAD` where the row is a `GET` (RFC 9110, 9.3.2: the same
/// answer without its body, which the HTTP server leaves out).
fn answers(row_method: &str, method: &str) -> bool {
    row_method == method || (method == "HEAD" && row_method == "GET")
}

fn parse<R: RouteSpec>(route: &'static R) -> Parsed<R> {
    let template = route.template();
    let pattern = PathPattern::parse(Cow::Borrowed(template))
        .ok()
        .filter(|p| !p.rest && p.params() <= 1)
        .unwrap_or_else(|| {
            panic!("template {template}: starts with /, at most {PATH_SEGMENTS_MAX} segments and one parameter, no *")
        });
    Parsed {
        route,
        literals: pattern.literals(),
        pattern,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Eq)]
    struct Row(&'static str, &'static str);

    impl RouteSpec for Row {
        fn method(&self) -> &'static str {
            self.0
        }
        fn template(&self) -> &'static str {
            self.1
        }
    }

    const ROWS: &[Row] = &[
        Row("GET", "/health"),
        Row("GET", "/items/{id}"),
        Row("PUT", "/items/{id}"),
        Row("POST", "/items/reserve"),
        Row("DELETE", "/items/reserve/{id}"),
        Row("GET", "/items/{id}/log"),
    ];

    static ROUTER: Router<Row> = Router::new(ROWS);

    fn status(method: &str, path: &str) -> u16 {
        ROUTER.find(method, path).unwrap_err().status().as_u16()
    }

    #[test]
    fn literal_segments_win_over_parameters() {
        let m = ROUTER.find("POST", "/items/reserve").unwrap();
        assert_eq!((m.route, m.param), (&ROWS[3], None));
        let m = ROUTER.find("PUT", "/items/abc").unwrap();
        assert_eq!((m.route, m.param), (&ROWS[2], Some("abc")));
        let m = ROUTER.find("DELETE", "/items/reserve/x").unwrap();
        assert_eq!((m.route, m.param), (&ROWS[4], Some("x")));
    }

    #[test]
    fn wrong_method_is_405_with_allow_and_unknown_path_is_404() {
        let p = ROUTER.find("DELETE", "/items/abc").unwrap_err();
        assert_eq!(p.status().as_u16(), 405);
        let resp = p.into_response(&crate::RequestId::parse("t").unwrap());
        assert_eq!(resp.headers()["allow"], "GET, PUT, HEAD");
        assert_eq!(status("GET", "/items/reserve"), 405);
        assert_eq!(status("GET", "/nope"), 404);
        assert_eq!(status("GET", "/items//log"), 404, "empty parameter");
        assert_eq!(status("GET", "health"), 404, "no leading slash");
        assert_eq!(
            status("GET", "/items/reserve/log"),
            405,
            "ties go to the first template in the table"
        );
    }

    /// `HEAD` is answered by the `GET` row of a template, and only there.
    #[test]
    fn head_is_answered_where_get_is() {
        let m = ROUTER.find("HEAD", "/items/abc").unwrap();
        assert_eq!((m.route, m.param), (&ROWS[1], Some("abc")));
        assert_eq!(ROUTER.find("HEAD", "/health").unwrap().route, &ROWS[0]);
        let p = ROUTER.find("HEAD", "/items/reserve").unwrap_err();
        assert_eq!(p.status().as_u16(), 405);
        let resp = p.into_response(&crate::RequestId::parse("t").unwrap());
        assert_eq!(resp.headers()["allow"], "POST");
    }

    #[test]
    fn paths_longer_than_any_template_bound_are_404() {
        let long = "/a".repeat(PATH_SEGMENTS_MAX + 1);
        assert_eq!(status("GET", &long), 404);
        assert_eq!(ROUTER.routes().len(), ROWS.len());
    }
}
