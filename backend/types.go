package backend

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Run statuses.
const (
	RunRunning = "running"
	// RunWaiting: every outstanding job of the run waits (a sleep or an
	// await; see NewJob.Wait); it holds no claim and no worker. Every
	// operation treats it like running (its due jobs are claimed), and a
	// completion with Plan.Settle moves it back and forth.
	RunWaiting   = "waiting"
	RunCompleted = "completed"
	RunHalted    = "halted"
	RunCancelled = "cancelled"
)

// Job statuses.
const (
	JobPending = "pending"
	JobRunning = "running"
	// JobWaiting: the job waits on something outside the run (a signal, a
	// sleep, a limit) and holds no claim.
	JobWaiting   = "waiting"
	JobCompleted = "completed"
	JobFailed    = "failed"
	// JobCancelled is terminal: CancelRun sets it on the run's pending and
	// running jobs. A running job's claim is thereby lost: its Complete,
	// Fail and Release return ErrStaleClaim.
	JobCancelled = "cancelled"
)

// Sentinel errors. Backends return them (possibly wrapped); callers use errors.Is.
var (
	// ErrStaleClaim: the fencing token or owner presented with a commit or
	// release no longer matches the job; nothing was changed.
	ErrStaleClaim = errors.New("ductwork: stale claim: the job was reaped or claimed by another execution")
	// ErrProcessNotFound: the process row is gone (it was reaped).
	ErrProcessNotFound = errors.New("ductwork: process not found (reaped)")
	// ErrRunNotFound: no run has that ID.
	ErrRunNotFound = errors.New("ductwork: run not found")
	// ErrRunState: the run is not in a state that allows the operation.
	ErrRunState = errors.New("ductwork: run is not in a state that allows this operation")
	// ErrValueExists: a write-once run context key is already set.
	ErrValueExists = errors.New("ductwork: run context key already set")
	// ErrValueNotFound: the run context has no such key.
	ErrValueNotFound = errors.New("ductwork: run context key not found")
	// ErrUnsupportedTx: the transaction handed to Trigger is not of the type
	// this backend joins.
	ErrUnsupportedTx = errors.New("ductwork: transaction type not supported by this backend")
	// ErrDefinitionNotFound: no definition version with that pipeline and
	// fingerprint is stored.
	ErrDefinitionNotFound = errors.New("ductwork: definition not stored")
	// ErrClosed: the backend or its database handle has been closed.
	ErrClosed = errors.New("ductwork: database is closed")
	// ErrNotMigrated: the backend's tables do not exist, or lack a column
	// this code needs (Migrate has not run on this database or schema, or
	// not since the library was upgraded).
	ErrNotMigrated = errors.New("ductwork: the database is not migrated (run the backend's Migrate)")
	// ErrKeyConflict: a trigger's Key names a run of the same pipeline that
	// was started with another input; nothing was written.
	ErrKeyConflict = errors.New("ductwork: trigger key already used with another input")
)

// DefinitionRef names one version of a pipeline definition.
type DefinitionRef struct {
	Pipeline    string
	Fingerprint string
}

// NewJob describes a job (one step instance) to insert.
type NewJob struct {
	// NodeID is the definition node the job executes.
	NodeID string
	// Scope is the expansion path of the step instance ("" at the top level,
	// "3" inside the 4th element of an expand, "3.0" one level deeper).
	// (RunID, NodeID, Scope) is unique.
	Scope string
	// Input is the encoded input. Nil for a join job, whose input is the
	// ordered list of its arrivals' outputs.
	Input []byte
	// Delay postpones the job: due at the database's now + Delay.
	Delay time.Duration
	// Priority orders due jobs; higher first.
	Priority int
	// Wait, when set (WaitSleep or WaitSignal), makes the job one that waits
	// rather than works: it counts as waiting for the run's status (see
	// Plan.Settle).
	Wait string
	// DueAt, when not zero, is the job's due time itself (a sleep until a
	// time); Delay is then ignored.
	DueAt time.Time
	// Signal (WaitSignal) is the name of the signal the job awaits; Delay is
	// its timeout (Forever for none).
	Signal string
	// SignalKey (WaitSignal) is the key a signal with a TargetKey target
	// must name to be delivered to this job.
	SignalKey string
	// Queue is the queue the job is claimed from ("" is the default queue).
	Queue string
	// Gate holds the job back until its limits let it start.
	Gate Gate
}

// OpenJoin opens a join that waits for Expected arrivals. When the last one
// arrives (or at once when Expected is 0), a join job for (NodeID, Scope) is
// inserted whose input is the outputs of the arrivals in slot order.
type OpenJoin struct {
	NodeID   string
	Scope    string
	Expected int
	Delay    time.Duration
	Priority int
	// Queue and Gate are those of the join's job (see NewJob).
	Queue string
	Gate  Gate
}

// Arrival marks the completing job as arriving at slot Slot of the join
// (NodeID, Scope), opened earlier by an OpenJoin in the same run. An arrival
// at a join that was never opened, or that already received its Expected
// arrivals and fired, makes Complete return a permanent error (see
// Permanent) and change nothing.
type Arrival struct {
	NodeID string
	Scope  string
	Slot   int
	// Queue and Gated describe the join's job (see NewJob), for NextDue.
	Queue string
	Gated bool
}

// Plan is what follows a completed job, decided by the engine. The backend
// applies it, inside the completion transaction, without interpreting it.
type Plan struct {
	// Jobs to insert.
	Jobs []NewJob
	// Joins to open (expand and divide).
	OpenJoins []OpenJoin
	// Arrive, if set, counts the completing job as an arrival at a join.
	Arrive *Arrival
	// CompleteRun marks the job as the run's end node: its output becomes the
	// run's output, and the run is completed unless detached work is still
	// outstanding (see Detached).
	CompleteRun bool
	// Detached is the change this completion makes to the run's outstanding
	// detached work: +1 for each job inserted and each join opened on a
	// branch that ends detached (one that never reaches the end node), -1
	// when the completing job is on such a branch. It is 0 for every
	// completion of a definition that detaches nothing.
	//
	// A backend keeps, on the run, the count of outstanding work: 1 for the
	// end node until a CompleteRun completion, plus the sum of the Detached
	// of the run's completions. A completion with CompleteRun or a non-zero
	// Detached applies its change (-1 for CompleteRun, plus Detached) in the
	// completion transaction; the completion that brings the count to 0
	// completes a running run, and CompleteResult.RunCompleted reports it.
	// The count and the output are kept for a halted run too, so a run
	// halted by a detached branch after its end node finished completes when
	// it is revived and that branch finishes. No completion without either
	// reads or writes the run row.
	Detached int
	// Settle asks the backend to set the run's status, after applying the
	// plan, from its outstanding jobs: RunWaiting when every pending job of
	// the run waits (NewJob.Wait) and none is running, else RunRunning. Only
	// a running or waiting run changes. The engine sets it for definitions
	// that wait (sleeps and awaits) when the completing job waited or the
	// plan inserts no job due at once, so completions of other definitions
	// never touch the run row for it.
	Settle bool
}

// NextDue names the job a ClaimNext completion should claim: the first of the
// plan's jobs due at once, else the join this completion may fire (an
// arrival's, or an empty expansion's). The join's job exists only if the join
// fired (and is due only if the join has no delay), so a backend claims the
// named job only when it finds it pending and due.
//
// Only ungated jobs of queue are named: a gated job (see Gate) starts only
// through a gated Claim, which applies its limits, and a job of another
// queue belongs to the processes serving that queue.
func (p *Plan) NextDue(queue string) (nodeID, scope string, ok bool) {
	for _, j := range p.Jobs {
		if j.Delay <= 0 && j.Queue == queue && !j.Gate.Gated() {
			return j.NodeID, j.Scope, true
		}
	}
	if a := p.Arrive; a != nil {
		if a.Queue != queue || a.Gated {
			return "", "", false
		}
		return a.NodeID, a.Scope, true
	}
	for _, o := range p.OpenJoins {
		if o.Expected == 0 && o.Delay <= 0 && o.Queue == queue && !o.Gate.Gated() {
			return o.NodeID, o.Scope, true
		}
	}
	return "", "", false
}

// ClaimOnInsert returns the index in p.Plan.Jobs of the job a completion
// with ClaimNext may insert already claimed (running, fence 1, owned by
// p.ProcessID, when its run is running), or -1: only when that job
// (Plan.NextDue) is one of the plan's jobs and does not wait, and nothing
// else in the plan (an arrival, a join, the run's end or outstanding work, a
// settle) comes between its insertion and the claim. Inserting it claimed
// writes the same row as inserting it and then claiming it, in one
// statement.
func (p *CompleteParams) ClaimOnInsert() int {
	pl := &p.Plan
	if p.ClaimNext <= 0 || len(pl.OpenJoins) > 0 || pl.Arrive != nil || pl.Settle || pl.CompleteRun || pl.Detached != 0 {
		return -1
	}
	for k, j := range pl.Jobs {
		if j.Delay <= 0 && j.Queue == p.Queue && !j.Gate.Gated() {
			if j.Wait != "" {
				return -1
			}
			return k
		}
	}
	return -1
}

// TriggerParams are the arguments of Backend.Trigger.
type TriggerParams struct {
	Pipeline    string
	Fingerprint string
	Input       []byte
	Metadata    map[string]string
	First       NewJob
	// Identity is a random string drawn by the caller for this run, stored
	// with it and handed back with every claimed job (Job.RunIdentity), so
	// that keys derived from it differ between databases whose run IDs
	// collide. Up to 64 bytes.
	Identity string
	// Tx, if non-nil, is a transaction of the backend's own type that the
	// inserts join. The caller commits or rolls back.
	Tx any
	// Key, if non-empty, makes the trigger idempotent: it is stored unique
	// per pipeline, and a trigger whose Key names an existing run of the
	// pipeline writes nothing and returns that run with Existing set (or
	// ErrKeyConflict if the stored input differs from Input). A caller whose
	// trigger failed ambiguously (the reply was lost) retries with the same
	// Key and gets the run the first attempt started, never a duplicate.
	Key string
	// KeyWhileActive binds Key to its run only while the run is active
	// (running, waiting or halted): a trigger whose Key names a completed or
	// cancelled run takes the key from it (that run keeps no key) and
	// starts a new run, whatever its input. Without it a key is bound to its
	// run for as long as the run's row exists.
	KeyWhileActive bool
}

// TriggerResult is the result of Backend.Trigger.
type TriggerResult struct {
	RunID int64
	JobID int64
	// Existing is true when Key matched a run triggered earlier: nothing was
	// written, RunID is that run and JobID its first job.
	Existing bool
}

// ClaimParams are the arguments of Backend.Claim.
type ClaimParams struct {
	ProcessID   string
	Limit       int
	Definitions []DefinitionRef
	// Queue is the queue to claim from ("" is the default queue).
	Queue string
	// Gated claims only gated jobs (NewJob.Gate), and only as many as their
	// limits allow: in one transaction, each concurrency key's running jobs
	// are counted and each rate limit's state advanced, under a lock on the
	// limit's row, so that limits hold exactly across concurrent claimers.
	// Gated jobs start in claim order within each limit (a job held back
	// holds back the later jobs of its limits). Without Gated only ungated
	// jobs are claimed, and no limit is read.
	Gated bool
	// RateLimits describes the rate limits gated jobs name. A job naming a
	// limit missing here is not claimed.
	RateLimits []RateLimit
}

// ClaimResult is the result of Backend.Claim.
type ClaimResult struct {
	Jobs []*Job
	// RetryIn, after a gated claim held a job back for a rate limit, is how
	// long until that limit has a token again (by the database's clock):
	// the caller may claim again then. Zero otherwise.
	RetryIn time.Duration
}

// Job is a claimed job, with what the executor needs to run it.
type Job struct {
	ID          int64
	RunID       int64
	Pipeline    string
	Fingerprint string
	// RunIdentity is the run's TriggerParams.Identity ("" for runs stored
	// before it existed). Jobs in CompleteResult.Claimed may leave it, and
	// Pipeline, Fingerprint and Metadata, empty: the caller knows them.
	RunIdentity string
	NodeID      string
	Scope       string
	Input       []byte
	// Join is true for a join job; JoinInputs then holds the arrivals'
	// outputs in slot order (possibly empty).
	Join       bool
	JoinInputs [][]byte
	// Attempt is 1 for the first execution and grows with each retry (and
	// with a revive). Crash re-runs do not change it.
	Attempt int
	// RetryBase is the Attempt a revive started the job's fresh retry budget
	// from (0 if it was never revived): the budget spent is
	// Attempt-RetryBase.
	RetryBase int
	// Crashes counts executions lost to a dead process (reaped). Graceful
	// releases do not count.
	Crashes int
	// Fence is the fencing token of this claim; present it to Complete, Fail
	// and Release.
	Fence     int64
	Metadata  map[string]string
	CreatedAt time.Time
	DueAt     time.Time
	ClaimedAt time.Time
}

// CompleteParams are the arguments of Backend.Complete.
type CompleteParams struct {
	JobID     int64
	ProcessID string
	Fence     int64
	Output    []byte
	Plan      Plan
	// ClaimNext asks the backend to claim, for ProcessID and in the same
	// transaction, up to ClaimNext of the jobs this completion inserts that
	// are due at once, and return them in CompleteResult.Claimed, so the
	// caller can run the next step without a separate claim. A backend may
	// claim fewer (or none); every returned job is claimed exactly as Claim
	// would have claimed it (status running, new fence, owner ProcessID).
	ClaimNext int
	// Queue is the queue ClaimNext claims from: only an ungated job of this
	// queue is claimed (see Plan.NextDue).
	Queue string
	// InTx, when set, makes this a transactional completion (a backend whose
	// Capabilities.TxKind is empty returns ErrUnsupportedTx). The backend
	// begins a transaction and first locks the job and checks its fence and
	// owner, exactly as the completion would: a stale claim returns
	// ErrStaleClaim and InTx is not called. It then calls InTx with that
	// transaction (the backend's own type, named by Capabilities.TxKind) and
	// applies the output and plan InTx returns (Output and Plan are ignored)
	// with the same statements as any completion, in the same transaction,
	// and commits. If InTx returns an error, everything is rolled back and
	// Complete returns that error unchanged. The job row stays locked while
	// InTx runs. A backend may call InTx again in a fresh transaction when
	// its own transaction must be rerun (a deadlock); every call but the last
	// was rolled back.
	InTx func(ctx context.Context, tx any) (output []byte, plan Plan, err error)
	// TxTimeout, with InTx, bounds the transaction where the database can
	// enforce it server side (a process stopped while holding it does not
	// hold the job's lock for ever). Zero means the backend's default.
	TxTimeout time.Duration
}

// CompleteResult is the result of Backend.Complete.
type CompleteResult struct {
	// Claimed are jobs claimed for the caller because of ClaimNext.
	Claimed []*Job
	// NewJobs counts jobs inserted (including a fired join's job).
	NewJobs int
	// JoinFired is true when this completion was the last arrival of a join.
	JoinFired bool
	// RunCompleted is true when this completion finished the run: it was the
	// end node or the last outstanding detached work, and the other had
	// already finished.
	RunCompleted bool
	// Replayed is true when the job had already been completed under this
	// very claim (same ProcessID and Fence): an earlier call committed and
	// its reply was lost. Nothing was changed; NewJobs and JoinFired are
	// zero, Claimed is empty (jobs that earlier call claimed are owned by
	// ProcessID: HeartbeatParams.Owned lists them), and RunCompleted reports
	// whether the plan completed the run and the run is completed.
	Replayed bool
}

// FailParams are the arguments of Backend.Fail.
type FailParams struct {
	JobID     int64
	ProcessID string
	Fence     int64
	// Error is the failure's message, stored with the job (and with the run
	// when it halts).
	Error string
	// Stack is the goroutine stack of a panic, stored apart from Error.
	Stack string
	// Cause is why the run halts; used when Retry is false.
	Cause HaltCause
	// Retry schedules another attempt after RetryAfter; otherwise the job
	// fails and the run halts.
	Retry      bool
	RetryAfter time.Duration
	// Outcome is what the execution history records for this execution:
	// OutcomeFailed when empty. OutcomeTimeout marks an execution ended by a
	// hard timeout.
	Outcome Outcome
}

// FailOutcome is the outcome a backend records for p: p.Outcome, or
// OutcomeFailed when it is empty.
func (p *FailParams) FailOutcome() string {
	if p.Outcome == "" {
		return string(OutcomeFailed)
	}
	return string(p.Outcome)
}

// FailResult is the result of Backend.Fail.
type FailResult struct {
	// Halted is true only for the call that moved the run to halted. A
	// replayed halt (see Replayed) reports it again, as the backend records
	// which job and fence halted a run.
	Halted bool
	// Replayed is true when the job had already been failed (without Retry)
	// under this very claim (same ProcessID and Fence): an earlier call
	// committed and its reply was lost. Nothing was changed.
	Replayed bool
}

// ReleaseParams are the arguments of Backend.Release.
type ReleaseParams struct {
	JobID     int64
	ProcessID string
	Fence     int64
	// Crashed counts the release as an execution lost to a crash (Crashes+1,
	// spending the crash budget), as a reap would. A graceful release leaves
	// it false.
	Crashed bool
}

// CrashIncrement is what a backend adds to the job's crash count: 1 when the
// release is Crashed, else 0.
func (p *ReleaseParams) CrashIncrement() int {
	if p.Crashed {
		return 1
	}
	return 0
}

// ReleaseResult is the result of Backend.Release.
type ReleaseResult struct{}

// RegisterProcessParams are the arguments of Backend.RegisterProcess.
type RegisterProcessParams struct {
	ProcessID   string
	Host        string
	PID         int
	Definitions []DefinitionRef
}

// RegisterProcessResult is the result of Backend.RegisterProcess.
type RegisterProcessResult struct {
	StartedAt time.Time
}

// HeartbeatParams are the arguments of Backend.Heartbeat.
type HeartbeatParams struct {
	ProcessID string
	// Runs are the runs of the jobs the process holds (claimed, queued or
	// executing). The result reports which of them are cancelled.
	Runs []int64
	// Owned asks for the jobs the process owns (status running), returned in
	// HeartbeatResult.Owned, so that the process can release those it is not
	// running (claims whose reply was lost).
	Owned bool
}

// HeartbeatResult is the result of Backend.Heartbeat.
type HeartbeatResult struct {
	At time.Time
	// CancelledRuns are the runs of HeartbeatParams.Runs whose status is
	// cancelled, in any order.
	CancelledRuns []int64
	// Owned lists the running jobs owned by the process, with their fences,
	// when HeartbeatParams.Owned was set (read after the heartbeat's update).
	Owned []OwnedJob
}

// OwnedJob names one claim the database holds for a process.
type OwnedJob struct {
	JobID int64
	Fence int64
}

// DeregisterProcessParams are the arguments of Backend.DeregisterProcess.
type DeregisterProcessParams struct {
	ProcessID string
}

// ReapParams are the arguments of Backend.Reap.
type ReapParams struct {
	// ProcessID is the reaper itself; it is never reaped.
	ProcessID string
	// Threshold: processes whose heartbeat is older are dead.
	Threshold time.Duration
}

// ReapResult is the result of Backend.Reap.
type ReapResult struct {
	// Processes are the IDs of the processes reaped, sorted.
	Processes []string
	// Jobs counts the running jobs made due again.
	Jobs int
}

// GetRunParams are the arguments of Backend.GetRun.
type GetRunParams struct {
	RunID int64
}

// Run is a stored run.
type Run struct {
	ID          int64
	Pipeline    string
	Fingerprint string
	// Identity is the run's TriggerParams.Identity.
	Identity  string
	Status    string
	Input     []byte
	Output    []byte
	Error     string
	Metadata  map[string]string
	CreatedAt time.Time
	UpdatedAt time.Time
	// The halt fields describe the failure that last halted the run: the
	// node and scope of the failed job, its cause, the job's attempt number
	// and the panic stack, if any. Empty (zero) for a run that never halted.
	HaltNode    string
	HaltScope   string
	HaltCause   HaltCause
	HaltAttempt int
	HaltStack   string
}

// ListRunsParams are the arguments of Backend.ListRuns.
type ListRunsParams struct {
	// Pipeline and Status filter when non-empty.
	Pipeline string
	Status   string
	// CreatedFrom (inclusive) and CreatedTo (exclusive) bound the runs'
	// created_at when not zero.
	CreatedFrom time.Time
	CreatedTo   time.Time
	// Limit caps the page (default 100).
	Limit int
	// BeforeID continues a listing: only runs with a smaller ID. Zero or
	// negative lists from the newest run.
	BeforeID int64
}

// ListRunsResult is the result of Backend.ListRuns.
type ListRunsResult struct {
	Runs []*Run
	// Next is the BeforeID of the next page, 0 when this was the last.
	Next int64
}

// ListJobsParams are the arguments of Backend.ListJobs.
type ListJobsParams struct {
	RunID int64
	// Status filters when non-empty.
	Status string
	Limit  int
	// AfterID continues a listing: only jobs with a larger ID. Zero or
	// negative lists from the first job.
	AfterID int64
}

// JobInfo is a stored job, as listed.
type JobInfo struct {
	ID     int64
	RunID  int64
	NodeID string
	Scope  string
	Status string
	Input  []byte
	Output []byte
	Error  string
	// Stack is the panic stack of the last failure, if it was a panic.
	Stack   string
	Join    bool
	Attempt int
	// RetryBase: see Job.RetryBase.
	RetryBase  int
	Crashes    int
	Fence      int64
	ProcessID  string
	CreatedAt  time.Time
	DueAt      time.Time
	StartedAt  *time.Time
	FinishedAt *time.Time
}

// ListJobsResult is the result of Backend.ListJobs.
type ListJobsResult struct {
	Jobs []*JobInfo
	// Next is the AfterID of the next page, 0 when this was the last.
	Next int64
}

// CancelRunParams are the arguments of Backend.CancelRun.
type CancelRunParams struct {
	RunID  int64
	Reason string
}

// CancelRunResult is the result of Backend.CancelRun.
type CancelRunResult struct{}

// ReviveRunParams are the arguments of Backend.ReviveRun.
type ReviveRunParams struct {
	RunID int64
}

// ReviveRunResult is the result of Backend.ReviveRun.
type ReviveRunResult struct {
	// Jobs counts failed jobs made due again.
	Jobs int
}

// SetValueParams are the arguments of Backend.SetValue.
type SetValueParams struct {
	RunID     int64
	Key       string
	Value     []byte
	Overwrite bool
}

// GetValueParams are the arguments of Backend.GetValue.
type GetValueParams struct {
	RunID int64
	Key   string
}

// GetValueResult is the result of Backend.GetValue.
type GetValueResult struct {
	Value []byte
}

// StrandedDefinitionsParams are the arguments of Backend.StrandedDefinitions.
type StrandedDefinitionsParams struct {
	Known []DefinitionRef
}

// StrandedDefinitionsResult is the result of Backend.StrandedDefinitions.
type StrandedDefinitionsResult struct {
	Definitions []StrandedDefinition
}

// StrandedDefinition is a definition with unfinished runs that no caller knows.
type StrandedDefinition struct {
	DefinitionRef
	Runs int
}

// SaveDefinitionsParams are the arguments of Backend.SaveDefinitions.
type SaveDefinitionsParams struct {
	Definitions []StoredDefinition
}

// SaveDefinitionsResult is the result of Backend.SaveDefinitions.
type SaveDefinitionsResult struct {
	// Inserted counts the definitions that were not stored before this call.
	Inserted int
}

// StoredDefinition is the shape of one definition version as stored: Shape
// is an opaque document (JSON, see Shape) that the backend keeps as given.
type StoredDefinition struct {
	DefinitionRef
	Shape []byte
	// CreatedAt is when the version was first stored (database clock); set by
	// GetDefinition, ignored by SaveDefinitions.
	CreatedAt time.Time
}

// GetDefinitionParams are the arguments of Backend.GetDefinition.
type GetDefinitionParams struct {
	Ref DefinitionRef
}

// Shape is the drawable form of a definition, encoded as JSON into
// StoredDefinition.Shape so tools can draw a run's graph without the
// pipeline's code.
type Shape struct {
	Pipeline    string      `json:"pipeline"`
	Fingerprint string      `json:"fingerprint"`
	InType      string      `json:"in_type"`
	OutType     string      `json:"out_type"`
	Nodes       []ShapeNode `json:"nodes"`
	// Retries, Backoff, MaxFanOut and MaxCrashes are the pipeline's defaults.
	Retries    int           `json:"retries,omitempty"`
	Backoff    time.Duration `json:"backoff,omitempty"`
	MaxBackoff time.Duration `json:"max_backoff,omitempty"`
	MaxFanOut  int           `json:"max_fan_out,omitempty"`
	MaxCrashes int           `json:"max_crashes,omitempty"`
	// Signals are the signals the definition awaits, once each, in the
	// order of their first await.
	Signals []ShapeSignal `json:"signals,omitempty"`
}

// ShapeSignal is a signal a definition awaits: its name and its payload's
// Go type.
type ShapeSignal struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// ShapeWait is what a sleep or await node waits for.
type ShapeWait struct {
	// Sleep is a sleep's duration; Until marks a sleep until a time computed
	// from the value.
	Sleep time.Duration `json:"sleep,omitempty"`
	Until bool          `json:"until,omitempty"`
	// Signal and SignalType name an await's signal and its payload type;
	// Timeout is 0 for none; Keyed marks an await with a key.
	Signal     string        `json:"signal,omitempty"`
	SignalType string        `json:"signal_type,omitempty"`
	Timeout    time.Duration `json:"timeout,omitempty"`
	Keyed      bool          `json:"keyed,omitempty"`
}

// ShapeNode is one node of a Shape.
type ShapeNode struct {
	// ID is the step name, unique in the pipeline.
	ID  string `json:"id"`
	Pos int    `json:"pos"`
	// Kind is the transition that reaches the node: start, chain, expand,
	// collapse, divide, combine, case, converge, sleep or await.
	Kind    string   `json:"kind"`
	Preds   []string `json:"preds,omitempty"`
	InType  string   `json:"in_type"`
	OutType string   `json:"out_type"`
	// Branch (divide), CaseKey and Fallback (case) place the node among its
	// siblings; Join names the node that closes the branches it opens.
	Branch   int    `json:"branch,omitempty"`
	CaseKey  string `json:"case_key,omitempty"`
	Fallback bool   `json:"fallback,omitempty"`
	Diverts  bool   `json:"diverts,omitempty"`
	Join     string `json:"join,omitempty"`
	// Detached marks the last step of a detached branch (nothing joins it).
	Detached bool `json:"detached,omitempty"`
	// Wait is set for sleep and await nodes.
	Wait *ShapeWait `json:"wait,omitempty"`
	// Options are the step's options, as set at definition time.
	Options ShapeOptions `json:"options"`
}

// ShapeOptions are a node's step options, as stored in a Shape.
type ShapeOptions struct {
	// Retries and MaxCrashes are nil when the step uses the pipeline's
	// default.
	Retries    *int          `json:"retries,omitempty"`
	Backoff    time.Duration `json:"backoff,omitempty"`
	MaxBackoff time.Duration `json:"max_backoff,omitempty"`
	Timeout    time.Duration `json:"timeout,omitempty"`
	Delay      time.Duration `json:"delay,omitempty"`
	Priority   int           `json:"priority,omitempty"`
	MaxCrashes *int          `json:"max_crashes,omitempty"`
	// Queue, Concurrency (a step-wide limit), KeyConcurrency (the limit per
	// key of a keyed limit) and RateLimit (the limit's name) are the step's
	// flow control.
	Queue          string `json:"queue,omitempty"`
	Concurrency    int    `json:"concurrency,omitempty"`
	KeyConcurrency int    `json:"key_concurrency,omitempty"`
	RateLimit      string `json:"rate_limit,omitempty"`
}

// Outcome says how one execution of a step instance ended, as the execution
// history records it. It is stored as its string value in a text column, so
// a new outcome needs no migration.
type Outcome string

// Execution outcomes.
const (
	// OutcomeCompleted: Complete committed the execution's output.
	OutcomeCompleted Outcome = "completed"
	// OutcomeFailed: the step returned an error or panicked (Fail). Whether
	// another attempt follows is the job's business: a retried failure is
	// followed by an execution with the next Attempt.
	OutcomeFailed Outcome = "failed"
	// OutcomeTimeout: a failure recorded with FailParams.Outcome set to it
	// (an execution ended by a hard timeout).
	OutcomeTimeout Outcome = "timeout"
	// OutcomeCrashed: the execution was lost with its process (Reap, or a
	// Release with Crashed).
	OutcomeCrashed Outcome = "crashed"
	// OutcomeReleased: the claim was given back unfinished (Release,
	// DeregisterProcess) without spending a budget.
	OutcomeReleased Outcome = "released"
	// OutcomeCancelled: CancelRun ended the run while the execution ran.
	OutcomeCancelled Outcome = "cancelled"
	// OutcomeRunning: the execution has not ended (its claim holds); its
	// FinishedAt is zero.
	OutcomeRunning Outcome = "running"
)

// executionFenceBits is how many low bits of an execution's ID hold its
// fence (see ExecutionID).
const executionFenceBits = 20

// ExecutionID is the ID of the execution of job jobID under claim fence:
// jobID·2^20 + fence. Ordering IDs orders executions by job, then by claim
// (the order a job's executions ran in). IDs are unique and ordered while a
// job has fewer than 2^20 claims and job IDs stay below 2^43.
func ExecutionID(jobID, fence int64) int64 {
	return jobID<<executionFenceBits | fence&(1<<executionFenceBits-1)
}

// ExecutionKey splits an execution ID (see ExecutionID) into its job ID and
// fence, the keyset a listing continues after.
func ExecutionKey(id int64) (jobID, fence int64) {
	if id <= 0 {
		return 0, 0
	}
	return id >> executionFenceBits, id & (1<<executionFenceBits - 1)
}

// Execution is one execution of a step instance: one claim of a job, from
// the claim to the write that ended it. A job's latest execution lives on
// its job row (claim, owner, fence, end, error), so a completion writes no
// more than the job row; the executions a job leaves behind (a retried
// failure, a crash, a release, the failure a revive re-runs) are history
// rows, written in the transaction that leaves them behind (Fail, Release,
// Reap, DeregisterProcess, ReviveRun). A listing is the union of both; a
// running execution is listed with OutcomeRunning and no end.
type Execution struct {
	// ID is ExecutionID(JobID, Fence).
	ID     int64
	RunID  int64
	JobID  int64
	NodeID string
	Scope  string
	// Attempt is the job's attempt number during the execution (see Job);
	// Crashes the number of crash re-runs of the job before it. Fence is the
	// claim's fencing token: (JobID, Fence) names one execution.
	Attempt   int
	Crashes   int
	Fence     int64
	ProcessID string
	// StartedAt (the claim) and FinishedAt are read from the database's
	// clock.
	StartedAt  time.Time
	FinishedAt time.Time
	Outcome    Outcome
	// Error and Stack are the failure's message and panic stack (failed
	// executions only).
	Error string
	Stack string
}

// ListExecutionsParams are the arguments of Backend.ListExecutions.
type ListExecutionsParams struct {
	RunID int64
	// JobID, if set, keeps only the executions of that job.
	JobID int64
	Limit int
	// AfterID continues a listing: only executions with a larger ID (by
	// job, then fence; see ExecutionID).
	AfterID int64
}

// ListExecutionsResult is the result of Backend.ListExecutions.
type ListExecutionsResult struct {
	Executions []*Execution
	// Next is the AfterID of the next page, 0 when this was the last.
	Next int64
}

// PruneExecutionsParams are the arguments of Backend.PruneExecutions.
type PruneExecutionsParams struct {
	// OlderThan: executions that finished longer ago than this, by the
	// database's clock, are deleted. It must be positive.
	OlderThan time.Duration
	// Limit caps the rows deleted by this call (default 1000).
	Limit int
}

// DefaultPruneLimit is PruneExecutionsParams.Limit when it is zero.
const DefaultPruneLimit = 1000

// PruneLimit checks p and returns the number of rows the call may delete.
// A non-positive OlderThan or a negative Limit is refused with a
// *PermanentError naming the field and the rule; nothing is deleted.
func (p *PruneExecutionsParams) PruneLimit() (int, error) {
	if p.OlderThan <= 0 {
		return 0, Permanent(fmt.Errorf("ductwork: PruneExecutions: OlderThan must be positive (got %s)", p.OlderThan))
	}
	switch {
	case p.Limit < 0:
		return 0, Permanent(fmt.Errorf("ductwork: PruneExecutions: Limit must not be negative (got %d)", p.Limit))
	case p.Limit == 0:
		return DefaultPruneLimit, nil
	}
	return p.Limit, nil
}

// PruneExecutionsResult is the result of Backend.PruneExecutions.
type PruneExecutionsResult struct {
	// Deleted counts the executions deleted. A call that deleted fewer than
	// its Limit found nothing more to delete among the oldest rows.
	Deleted int
}
