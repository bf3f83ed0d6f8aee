package readmodel

// The listings page by keyset: a query selects one row more than the page,
// in ID order, from the cursor on, and the extra row says whether another
// page follows.

// pageSize is the page size a filter's Limit asks for: DefaultPageSize when
// it is 0 or negative, at most MaxPageSize.
func pageSize(limit int) int {
	switch {
	case limit <= 0:
		return DefaultPageSize
	case limit > MaxPageSize:
		return MaxPageSize
	}
	return limit
}

// keysetPage cuts rows, selected with limit+1 as their limit, to one page
// and returns it with the cursor of the next page (the ID of the page's
// last row), 0 on the last page. The page is never nil, so that it
// encodes as a JSON array.
func keysetPage[T any](rows []T, limit int, id func(*T) int64) ([]T, int64) {
	var next int64
	if len(rows) > limit {
		rows = rows[:limit]
		next = id(&rows[limit-1])
	}
	if rows == nil {
		rows = []T{}
	}
	return rows, next
}
