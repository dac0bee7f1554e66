//! One page of a long list. A list is read one row past its page: the extra row says that
//! another page follows, so a last page that happens to be exactly full says it is the last
//! (`null`), and never points to an empty page.

/// The first `limit` of `rows` (read with a limit of `limit + 1`), and whether more follow.
pub fn cut<T>(mut rows: Vec<T>, limit: usize) -> (Vec<T>, bool) {
    let more = rows.len() > limit;
    rows.truncate(limit);
    (rows, more)
}

/// The first `limit` of `rows` (read with a limit of `limit + 1`), and the cursor for the next
/// page — `key` of the page's last row — when more follow.
pub fn after<T, K>(rows: Vec<T>, limit: usize, key: impl Fn(&T) -> K) -> (Vec<T>, Option<K>) {
    let (rows, more) = cut(rows, limit);
    let next = if more { rows.last().map(key) } else { None };
    (rows, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_last_page_is_the_last() {
        assert_eq!(after(vec![1, 2, 3], 3, |r| *r), (vec![1, 2, 3], None));
        assert_eq!(after(vec![1, 2, 3, 4], 3, |r| *r), (vec![1, 2, 3], Some(3)));
        assert_eq!(after(Vec::<u8>::new(), 3, |r| *r), (vec![], None));
        assert_eq!(cut(vec![1, 2], 1), (vec![1], true));
        assert_eq!(cut(vec![1], 1), (vec![1], false));
    }
}
