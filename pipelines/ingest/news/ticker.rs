//! Ticker resolution (a `code` field, `code=` in the link, else the longest company name in the
//! title) and the link parsing it shares with article ids ([`canonical_url`]).

use aho_corasick::AhoCorasick;

use super::formats::RawNews;

/// Resolves tickers from explicit codes, links or company names.
#[derive(Debug, Default)]
pub struct Resolver {
    /// (name, code), longest name first (then by name): the first a title mentions wins.
    names: Vec<(String, String)>,
    /// Every name at once, pattern `i` being `names[i]`: one pass over a title finds every
    /// place any name occurs (2,300 names on the full market were 2,300 searches a title).
    finder: Option<AhoCorasick>,
}

impl Resolver {
    pub fn new(names: impl IntoIterator<Item = (String, String)>) -> Self {
        let mut names: Vec<(String, String)> = names
            .into_iter()
            .filter(|(n, _)| n.chars().count() >= 2)
            .collect();
        names.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        names.dedup_by(|a, b| a.0 == b.0);
        // Past its size limits (never met by a market's names) the names are searched one by one.
        let finder = AhoCorasick::new(names.iter().map(|(n, _)| n)).ok();
        Self { names, finder }
    }

    pub(super) fn resolve(&self, raw: &RawNews) -> Option<String> {
        if let Some(c) = raw.code.as_deref().map(str::trim).filter(|c| is_code(c)) {
            return Some(c.to_string());
        }
        if let Some(c) = raw.url.as_deref().and_then(code_from_url) {
            return Some(c);
        }
        self.by_name(&raw.title)
    }

    /// The code of the first name (longest first) that `title` mentions as a word.
    fn by_name(&self, title: &str) -> Option<String> {
        let first = match &self.finder {
            // Every occurrence of every name, overlapping ones included: the first name in
            // the order above with one that stands as a word.
            Some(finder) => finder
                .find_overlapping_iter(title)
                .filter(|m| whole_word(title, m.start(), m.end()))
                .map(|m| m.pattern().as_usize())
                .min(),
            None => self.names.iter().position(|(n, _)| mentions(title, n)),
        };
        first
            .and_then(|i| self.names.get(i))
            .map(|(_, c)| c.clone())
    }
}

/// Korean particles that may follow a name directly (삼성전자가, 카카오의, ...).
const PARTICLES: &[char] = &[
    '은', '는', '이', '가', '을', '를', '의', '에', '도', '와', '과', '만', '로',
];

/// Whether `text` mentions `name` as a word: not inside a longer word (레이 in 플레이) and not
/// as the head of a longer name (신한 in 신한지주), though a particle may follow.
pub fn mentions(text: &str, name: &str) -> bool {
    text.match_indices(name)
        .any(|(i, m)| whole_word(text, i, i + m.len()))
}

/// Whether `text[start..end]` stands as a word (see [`mentions`]).
fn whole_word(text: &str, start: usize, end: usize) -> bool {
    let before = text.get(..start).and_then(|t| t.chars().next_back());
    let after = text.get(end..).and_then(|t| t.chars().next());
    before.is_none_or(|c| !c.is_alphanumeric())
        && after.is_none_or(|c| !c.is_alphanumeric() || PARTICLES.contains(&c))
}

fn is_code(s: &str) -> bool {
    s.len() == 6 && s.chars().all(|c| c.is_ascii_alphanumeric())
}

/// Value of a query parameter in a URL (no decoding needed for the ids used here).
fn query_param<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    let q = url.split_once('?')?.1;
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// `code=005930` in a link.
pub fn code_from_url(url: &str) -> Option<String> {
    query_param(url, "code")
        .filter(|c| is_code(c))
        .map(str::to_string)
}

/// The part of a URL that identifies the article: Naver's `office_id`+`article_id` when present
/// (list-page parameters like `page=` differ between crawls of the same article), else the URL
/// without its query's paging parameters.
pub fn canonical_url(url: &str) -> String {
    let url = url.trim();
    if let (Some(a), Some(o)) = (
        query_param(url, "article_id"),
        query_param(url, "office_id"),
    ) {
        return format!("naver:{o}/{a}");
    }
    match url.split_once('?') {
        Some((base, q)) => {
            let kept: Vec<&str> = q
                .split('&')
                .filter(|kv| {
                    let k = kv.split('=').next().unwrap_or("");
                    !matches!(
                        k,
                        "page" | "sm" | "utm_source" | "utm_medium" | "utm_campaign"
                    )
                })
                .collect();
            if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn company_names_match_whole_words_with_particles_only() {
        assert!(mentions("삼성전자, 2분기 실적 발표", "삼성전자"));
        assert!(mentions("[속보] 카카오의 신사업", "카카오"));
        assert!(mentions("SK 주가 급등", "SK"));
        assert!(!mentions("신한지주 배당 확대", "신한"));
        assert!(!mentions("플레이스테이션 판매", "레이"));
        assert!(!mentions("SK하이닉스 신고가", "SK"));
        let r = Resolver::new([
            ("SK".to_string(), "034730".to_string()),
            ("SK하이닉스".to_string(), "000660".to_string()),
        ]);
        let title = |t: &str| RawNews {
            title: t.into(),
            ..RawNews::default()
        };
        assert_eq!(
            r.resolve(&title("SK하이닉스 신고가")),
            Some("000660".into())
        );
        assert_eq!(r.resolve(&title("SK그룹 회장")), None);
    }

    #[test]
    fn one_pass_over_all_names_resolves_as_searching_each_name_in_turn() {
        let names = [
            "SK",
            "SK하이닉스",
            "SK텔레콤",
            "신한",
            "신한지주",
            "레이",
            "카카오",
            "카카오뱅크",
            "삼성",
            "삼성전자",
            "삼성SDI",
            "LG",
            "LG전자",
            "현대차",
            "기아",
            "NAVER",
        ];
        let r = Resolver::new(
            names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.to_string(), format!("{i:06}"))),
        );
        let one_by_one = Resolver {
            names: r.names.clone(),
            finder: None,
        };
        let titles = [
            "SK하이닉스·SK텔레콤 동반 강세",
            "카카오뱅크의 카카오 지분",
            "삼성전자가 삼성SDI 지분 매각",
            "플레이스테이션 신작, LG전자 TV 탑재",
            "신한지주와 신한 브랜드",
            "기아,현대차 판매 호조",
            "NAVERS 아님 NAVER는 맞음",
            "아무 회사도 없는 제목",
            "SKSK하이닉스",
            "",
        ];
        for t in titles {
            assert_eq!(r.by_name(t), one_by_one.by_name(t), "{t}");
        }
        assert_eq!(r.by_name(titles[0]), Some("000001".into()), "longest first");
    }
}
