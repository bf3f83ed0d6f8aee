package readmodel

// RunsSQL is the SQL text of the listing of f, for plan checks.
func (s *Store) RunsSQL(f *RunFilter) string {
	q, _ := s.runsQuery(f)
	return q.String()
}

// ExecutionsSQL is the SQL text of the listing of f, for plan checks.
func (s *Store) ExecutionsSQL(f *ExecutionFilter) string {
	q, _ := s.executionsQuery(f)
	return q.String()
}
