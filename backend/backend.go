package backend

import (
	"context"
	"time"
)

// Backend is the storage contract every Ductwork backend implements. Only the
// ductwork Client and the supervisor call it; users hold concrete types.
//
// Every method takes a context and a params struct and returns a result struct,
// so fields can be added without breaking third-party backends. Every method is
// safe for concurrent use by many goroutines and many processes sharing one
// database. All times that decide "is it due" or "is it stale" are taken from
// the database's clock; params carry durations, never host timestamps.
// Every method but Migrate, Capabilities and Close returns an error matching
// ErrNotMigrated when the backend's tables do not exist or are older than the
// backend's code.
type Backend interface {
	// Capabilities describes what the backend does natively. Callers degrade
	// to a working fallback (polling) for anything missing.
	Capabilities() Capabilities

	// Migrate brings the schema to the newest version. It is idempotent and
	// safe to call from several processes at once (it takes a cross-process
	// lock). It records the version it applied.
	Migrate(ctx context.Context) error

	// Trigger inserts a run and the job of its first step atomically. When
	// params.Tx is non-nil the inserts join that transaction (the backend's own
	// transaction type, documented by each backend) and the caller commits; a
	// rollback leaves no row. A Tx of the wrong type returns ErrUnsupportedTx.
	// With params.Key it is idempotent per (pipeline, key): a repeat returns
	// the existing run with Existing set, or ErrKeyConflict if its input
	// differs, and writes nothing.
	Trigger(ctx context.Context, params *TriggerParams) (*TriggerResult, error)

	// Claim atomically takes up to params.Limit due jobs of running runs whose
	// (pipeline, fingerprint) is in params.Definitions, marks them running,
	// owned by params.ProcessID, and gives each a new fencing token. A job is
	// claimed by at most one caller. Not-yet-due jobs are not claimed. An empty
	// result is not an error.
	Claim(ctx context.Context, params *ClaimParams) (*ClaimResult, error)

	// Complete records a job's output and applies params.Plan (new jobs, join
	// openings and arrivals, run completion) in one transaction guarded by the
	// job's fencing token and owner. If the token or owner no longer match it
	// returns ErrStaleClaim and changes nothing. A join whose last arrival is
	// applied here gets its job inserted in the same transaction, so a join
	// fires exactly once. It is idempotent per claim: a repeat of a call that
	// committed (same JobID, ProcessID and Fence; the job is completed) changes
	// nothing and returns a result with Replayed set, so a caller whose reply
	// was lost learns that its commit landed.
	Complete(ctx context.Context, params *CompleteParams) (*CompleteResult, error)

	// Fail records a failed execution, fenced like Complete. With
	// params.Retry the job becomes due again after params.RetryAfter and its
	// attempt count grows; otherwise the job is marked failed and the run is
	// halted with params.Error as its reason, and with the job's node, scope
	// and attempt, params.Cause and params.Stack in the run's halt fields
	// (see Run). The job keeps params.Error and params.Stack either way. Result.Halted is true only for
	// the one call that moved the run from running to halted. Without Retry
	// it is idempotent per claim like Complete: a repeat of a call that
	// committed returns Replayed, and Halted again if that call halted the
	// run. A repeat of a Retry that committed returns ErrStaleClaim.
	Fail(ctx context.Context, params *FailParams) (*FailResult, error)

	// Release gives a claimed job back (graceful shutdown), fenced like
	// Complete. The job keeps its due time (so it is due at once, ahead of
	// work that became due later); its retry budget (Attempt) is not spent,
	// and neither is its crash budget (Crashes) unless params.Crashed says the
	// execution was lost as in a crash (then Crashes grows by one, as a reap
	// would make it).
	Release(ctx context.Context, params *ReleaseParams) (*ReleaseResult, error)

	// RegisterProcess inserts (or refreshes) a process row with a fresh
	// heartbeat. It is idempotent for the same ID (an existing row keeps its
	// StartedAt).
	RegisterProcess(ctx context.Context, params *RegisterProcessParams) (*RegisterProcessResult, error)

	// Heartbeat refreshes a process's heartbeat from the database's clock and
	// reports which of params.Runs are cancelled (so the caller stops their
	// steps). It returns ErrProcessNotFound if the process row is gone (it
	// was reaped).
	// With params.Owned it also lists the running jobs the process owns.
	Heartbeat(ctx context.Context, params *HeartbeatParams) (*HeartbeatResult, error)

	// DeregisterProcess removes a process row after releasing whatever it
	// still holds (as Release does: no crash is counted). Idempotent.
	DeregisterProcess(ctx context.Context, params *DeregisterProcessParams) error

	// Reap removes processes whose heartbeat is older than params.Threshold by
	// the database's clock, in one transaction that re-checks staleness. Their
	// running jobs become pending again as crash re-runs (Crashes+1, Attempt
	// unchanged, due time kept, new fencing token on next claim). Jobs left running by an
	// owner that has no process row are reset too. Reaping is idempotent and
	// safe from many processes at once: each dead process is reaped once.
	Reap(ctx context.Context, params *ReapParams) (*ReapResult, error)

	// ListExecutions returns the executions of one run (optionally of one
	// job), by job then claim (ID order), paginated: the history rows and
	// each job row's latest execution, a running one included (see
	// Execution), read in one statement. An unknown run has no executions
	// (an empty result, not an error).
	ListExecutions(ctx context.Context, params *ListExecutionsParams) (*ListExecutionsResult, error)

	// PruneExecutions deletes up to params.Limit of the oldest history rows
	// (executions a job left behind; a job's latest execution goes with its
	// job) that finished more than params.OlderThan ago, in one short
	// transaction; callers repeat it while Deleted equals the limit. It
	// looks only at the oldest rows (the primary key's order), so a call
	// with nothing to delete costs a few rows read. A non-positive
	// OlderThan or a negative Limit is refused (a *PermanentError, see
	// PruneExecutionsParams.PruneLimit) and deletes nothing.
	PruneExecutions(ctx context.Context, params *PruneExecutionsParams) (*PruneExecutionsResult, error)

	// GetRun returns one run, or ErrRunNotFound.
	GetRun(ctx context.Context, params *GetRunParams) (*Run, error)

	// ListRuns returns runs, newest first, filtered and paginated.
	ListRuns(ctx context.Context, params *ListRunsParams) (*ListRunsResult, error)

	// ListJobs returns the jobs (step instances) of one run, in creation order,
	// paginated. An unknown run has no jobs (an empty result, not an error).
	ListJobs(ctx context.Context, params *ListJobsParams) (*ListJobsResult, error)

	// CancelRun moves a running, waiting or halted run to cancelled and, in
	// the same transaction, its pending and running jobs to JobCancelled, so
	// that none is claimed afterwards and a running one's Complete, Fail or
	// Release returns ErrStaleClaim. It is ordered against Complete: a
	// completion of the run commits either wholly before the cancel (and the
	// jobs it created are cancelled with the others) or not at all. It
	// returns ErrRunNotFound, or ErrRunState if the run already finished.
	CancelRun(ctx context.Context, params *CancelRunParams) (*CancelRunResult, error)

	// ReviveRun moves a halted run back to running and clears its error: its
	// failed jobs become due at once with their attempt count grown by one,
	// their last error kept and a fresh retry budget (RetryBase set to the
	// attempt they failed on); completed jobs are kept. It returns
	// ErrRunNotFound, or ErrRunState if the run is not halted.
	ReviveRun(ctx context.Context, params *ReviveRunParams) (*ReviveRunResult, error)

	// SetValue writes one key of a run's key-value context (ErrRunNotFound
	// if the run does not exist). Without
	// params.Overwrite an existing key is left as it is and ErrValueExists is
	// returned; concurrent writers of a new key have exactly one winner.
	SetValue(ctx context.Context, params *SetValueParams) error

	// GetValue reads one key of a run's key-value context, or ErrValueNotFound.
	GetValue(ctx context.Context, params *GetValueParams) (*GetValueResult, error)

	// StrandedDefinitions lists (pipeline, fingerprint) pairs that have
	// unfinished runs but are not in params.Known: work that the caller will
	// never claim. Callers report them; nothing is changed.
	StrandedDefinitions(ctx context.Context, params *StrandedDefinitionsParams) (*StrandedDefinitionsResult, error)

	// SaveDefinitions stores the shape of each definition version in
	// params.Definitions once per (pipeline, fingerprint). A version already
	// stored is left as it is (the first shape stored wins) and costs a read,
	// not a write. It is idempotent and safe from many processes at once.
	SaveDefinitions(ctx context.Context, params *SaveDefinitionsParams) (*SaveDefinitionsResult, error)

	// GetDefinition returns one stored definition version, or
	// ErrDefinitionNotFound.
	GetDefinition(ctx context.Context, params *GetDefinitionParams) (*StoredDefinition, error)

	// SendSignal stores a signal for params.RunID and, in the same
	// transaction, delivers it to the awaits of its name (and target) that
	// are waiting for it, by the database's clock (an await whose deadline
	// has passed is not waiting any more): a delivered await's job gets the
	// payload and becomes due at once, and a waiting run becomes running.
	// A signal no waiting await takes is kept, and delivered by
	// DeliverSignals when an await reaches it. Each await receives at most
	// one signal; a signal that is not TargetAll is consumed by at most one
	// await. It returns ErrRunNotFound for an unknown run and ErrRunFinished
	// for a completed or cancelled one, and stores nothing then. With
	// params.Tx it joins the caller's transaction (ErrUnsupportedTx for the
	// wrong type).
	SendSignal(ctx context.Context, params *SendSignalParams) (*SendSignalResult, error)

	// ReceiveSignal returns the signal delivered to a claimed await job,
	// fenced like Complete (ErrStaleClaim when the claim is not current). A
	// job claimed without a delivered signal timed out: Delivered is false,
	// and no signal can be delivered to it afterwards. It reads only; a
	// crash re-run receives the same signal.
	ReceiveSignal(ctx context.Context, params *ReceiveSignalParams) (*ReceiveSignalResult, error)

	// DeliverSignals delivers kept signals to awaits that have reached them
	// since they were sent (as SendSignal does, each in its own short
	// transaction), oldest signal first. Callers run it after a completion
	// that inserted awaits and periodically; it is idempotent and safe from
	// many processes at once.
	DeliverSignals(ctx context.Context, params *DeliverSignalsParams) (*DeliverSignalsResult, error)

	// SaveSchedules creates or updates one row per schedule of
	// params.Schedules, keyed by name: a new row gets the given NextTick; an
	// existing one takes the pipeline and missed-tick policy given, and the
	// NextTick too only when its spec or time zone changed (then the stored
	// last tick is kept). Paused is never changed. It is idempotent and safe
	// from many processes at once (the last writer's spec wins).
	SaveSchedules(ctx context.Context, params *SaveSchedulesParams) (*SaveSchedulesResult, error)

	// ListSchedules returns every stored schedule, by name, and the
	// database's clock.
	ListSchedules(ctx context.Context, params *ListSchedulesParams) (*ListSchedulesResult, error)

	// FireSchedule handles one schedule's due tick in one transaction: it
	// locks the schedule's row, and only when the row is not paused and its
	// next tick equals params.Expected it triggers params.Trigger (joining
	// the transaction, as Trigger with a Tx does; a key already bound to a
	// run returns that run with Existing, and ErrKeyConflict counts as
	// Existing too, with RunID 0) and stores params.Next as the next tick,
	// params.Tick and the run as the last ones. So of several processes that
	// fire the same tick at once, one starts the run and the others get
	// Fired false; the trigger key makes a tick start at most one run even
	// if the row is created again. ErrScheduleNotFound for an unknown name.
	FireSchedule(ctx context.Context, params *FireScheduleParams) (*FireScheduleResult, error)

	// PauseSchedule sets a schedule's Paused flag (ErrScheduleNotFound for
	// an unknown name). Resuming keeps the next tick: ticks that passed while
	// paused count as missed.
	PauseSchedule(ctx context.Context, params *PauseScheduleParams) (*PauseScheduleResult, error)

	// Now returns the database's clock.
	Now(ctx context.Context) (time.Time, error)

	// Close releases what the backend itself opened. It never closes a handle
	// the caller passed in.
	Close(ctx context.Context) error
}

// Capabilities describes what a backend does natively.
type Capabilities struct {
	// SkipLocked: claims use FOR UPDATE SKIP LOCKED (many concurrent claimers
	// without blocking). Without it claims are serialized by a single writer.
	SkipLocked bool
	// Notify: the backend can wake idle workers when work becomes available
	// (Notifications returns a channel). Without it callers poll.
	Notify bool
	// TimePrecision is the resolution of stored timestamps.
	TimePrecision time.Duration
	// Name identifies the backend in error messages (such as "mysql").
	Name string
	// Limits are the sizes the backend's schema can store; the zero value
	// means no limit.
	Limits Limits
	// TxKind names the transaction type CompleteParams.InTx receives (such
	// as "postgres" for pgx.Tx, "mysql" or "sqlite" for *sql.Tx); empty
	// means the backend does not run transactional completions. A
	// transactional step runs only on a backend of its kind.
	TxKind string
}

// Notifier is implemented by backends whose Capabilities report Notify.
type Notifier interface {
	// Notifications returns a channel that receives a value whenever new work
	// may be available. It is closed when ctx is done.
	Notifications(ctx context.Context) <-chan struct{}
}
