namespace MedServe;

/// <summary>The life of a deployed version, shown to users as it is.</summary>
public enum DeploymentState
{
    /// <summary>Wanted, but no silo can host it yet.</summary>
    Pending,
    /// <summary>Replicas are loading their ONNX Runtime sessions.</summary>
    Loading,
    /// <summary>Validation samples are running.</summary>
    Validating,
    /// <summary>Serving traffic.</summary>
    Ready,
    /// <summary>Could not load or did not reproduce its validation samples; see the reason.</summary>
    Failed,
    /// <summary>Not deployed; sessions are freed.</summary>
    Unloaded,
}

/// <summary>How a version is to be deployed.</summary>
[GenerateSerializer, Immutable, Alias("medserve.deployment-spec")]
public sealed record DeploymentSpec
{
    [Id(0)] public int Replicas { get; init; } = 1;
    /// <summary><c>cpu</c>, <c>gpu</c> or <c>any</c>; empty takes the manifest's.</summary>
    [Id(1)] public string? Accelerator { get; init; }

    /// <summary>How each replica's queue forms batches; changeable at runtime without a reload.</summary>
    [Id(2)] public BatchingPolicy Batching { get; init; } = new();
}

/// <summary>
/// Dynamic batching of one deployed version (per replica queue). Requests are grouped by the shape of their
/// non-batch dimensions and run as one ONNX Runtime call of up to <see cref="MaxBatchSize"/> rows.
/// </summary>
[GenerateSerializer, Immutable, Alias("medserve.batching-policy")]
public sealed record BatchingPolicy
{
    /// <summary>
    /// Most rows in one run; 1 turns batching off. Models without a named dynamic batch dimension always run alone.
    /// The default suits ONNX Runtime's CPU provider, where a batch's activations must stay in cache (bench/: a batch
    /// of 11 CT slices ran at a third of the per-row speed of a batch of 4); raise it for GPU deployments.
    /// </summary>
    [Id(0)] public int MaxBatchSize { get; init; } = 8;

    /// <summary>
    /// Longest time the oldest request may wait for a batch to fill, in microseconds. The batcher waits only while
    /// more requests are expected within that time (by their recent arrival rate); a lone request runs at once.
    /// The default, 0, never waits: a batch is what queued while the silo's ONNX Runtime threads were busy, so batching
    /// costs a request nothing when the silo has a free core and fills batches exactly when it has none (bench/README.md).
    /// Worth raising where a run costs about the same for one row as for many (a GPU).
    /// </summary>
    [Id(1)] public int MaxQueueDelayMicroseconds { get; init; }

    /// <summary>Batch sizes the model runs best at; a batch that reaches one of them is sent without waiting more.</summary>
    [Id(2)] public int[] PreferredBatchSizes { get; init; } = [];

    /// <summary>Requests a replica holds (queued, not yet running) before it answers 429.</summary>
    [Id(3)] public int MaxQueueSize { get; init; } = 1024;

    /// <summary>Timeout applied to requests that carry none, in microseconds; 0 means none.</summary>
    [Id(4)] public long DefaultTimeoutMicroseconds { get; init; }

    /// <summary>
    /// Bytes of input tensors a replica holds queued (not yet running) before it answers 429, as for a full queue: a
    /// thousand CT volumes are not a thousand tabular rows. An empty queue takes one request of any size (the body
    /// limits bound it). 256 MiB by default.
    /// </summary>
    [Id(5)] public long MaxQueueBytes { get; init; } = DefaultMaxQueueBytes;

    /// <summary>
    /// Most batches one replica runs at once; 0, the default, as many as its silo has ONNX Runtime threads. With 1, the
    /// requests that arrive while a batch runs wait for it and leave as the next batch, however many threads are free:
    /// worth it where a batch costs much less per row than a request alone and the silo's cores are shared with its
    /// front ends (bench/README.md: a small CNN on two cores), not for a model whose runs are most of the silo's work.
    /// </summary>
    [Id(6)] public int MaxConcurrentRuns { get; init; }

    /// <summary>Largest <see cref="MaxConcurrentRuns"/> a policy may ask for.</summary>
    public const int MaxConcurrentRunsLimit = 1024;

    /// <summary>The default of <see cref="MaxQueueBytes"/>: 256 MiB.</summary>
    public const long DefaultMaxQueueBytes = 256L << 20;

    /// <summary>Largest <see cref="MaxQueueBytes"/> a policy may ask for: 64 GiB.</summary>
    public const long MaxQueueBytesLimit = 64L << 30;

    public bool Equals(BatchingPolicy? other) =>
        other is not null && MaxBatchSize == other.MaxBatchSize && MaxQueueDelayMicroseconds == other.MaxQueueDelayMicroseconds
        && (PreferredBatchSizes ?? []).SequenceEqual(other.PreferredBatchSizes ?? []) && MaxQueueSize == other.MaxQueueSize
        && DefaultTimeoutMicroseconds == other.DefaultTimeoutMicroseconds && MaxQueueBytes == other.MaxQueueBytes
        && MaxConcurrentRuns == other.MaxConcurrentRuns;

    public override int GetHashCode() => HashCode.Combine(MaxBatchSize, MaxQueueDelayMicroseconds, PreferredBatchSizes?.Length ?? 0, MaxQueueSize, DefaultTimeoutMicroseconds, MaxQueueBytes, MaxConcurrentRuns);

    /// <summary>Longest timeout a request or policy may ask for: one hour.</summary>
    public const long MaxTimeoutMicroseconds = 3_600_000_000;

    /// <summary>What is wrong with this policy (field, message), or null when it is valid.</summary>
    public (string Field, string Message)? Problem() =>
        PreferredBatchSizes is null ? ("batching.preferred_batch_sizes", "must be a list (empty for none)") :
        MaxBatchSize is < 1 or > 4096 ? ("batching.max_batch_size", "must be between 1 and 4096")
        : MaxQueueDelayMicroseconds is < 0 or > 10_000_000 ? ("batching.max_queue_delay_microseconds", "must be between 0 and 10000000 (10 s)")
        : PreferredBatchSizes.Any(s => s < 1 || s > MaxBatchSize) ? ("batching.preferred_batch_sizes", "each must be between 1 and max_batch_size")
        : MaxQueueSize is < 1 or > 1_000_000 ? ("batching.max_queue_size", "must be between 1 and 1000000")
        : DefaultTimeoutMicroseconds is < 0 or > MaxTimeoutMicroseconds ? ("batching.default_timeout_microseconds", "must be 0 (none) or up to 3600000000 (one hour)")
        : MaxQueueBytes is < 1 or > MaxQueueBytesLimit ? ("batching.max_queue_bytes", "must be between 1 and 68719476736 (64 GiB)")
        : MaxConcurrentRuns is < 0 or > MaxConcurrentRunsLimit ? ("batching.max_concurrent_runs", "must be 0 (as many as the silo's ONNX Runtime threads) or between 1 and 1024")
        : null;
}

/// <summary>One replica: which silo runs its session, on which execution provider.</summary>
[GenerateSerializer, Immutable, Alias("medserve.replica-info")]
public sealed record ReplicaInfo(
    [property: Id(0)] string Key,
    [property: Id(1)] string Silo,
    [property: Id(2)] string ExecutionProvider,
    [property: Id(3)] DateTimeOffset LoadedAt);

/// <summary>A replica as it is now: its silo, and the session it holds (if any).</summary>
[GenerateSerializer, Immutable, Alias("medserve.replica-status")]
public sealed record ReplicaStatus(
    [property: Id(0)] string Key,
    [property: Id(1)] string Silo,
    [property: Id(2)] bool Loaded,
    [property: Id(3)] string? ExecutionProvider);

/// <summary>Outcome of running a version's validation samples.</summary>
[GenerateSerializer, Immutable, Alias("medserve.validation-report")]
public sealed record ValidationReport(
    [property: Id(0)] bool Passed,
    [property: Id(1)] int Samples,
    [property: Id(2)] int Failures,
    [property: Id(3)] double MaxAbsDiff,
    [property: Id(4)] double? MinDice,
    [property: Id(5)] string Summary);

/// <summary>What a deployment looks like from outside.</summary>
[GenerateSerializer, Immutable, Alias("medserve.deployment-info")]
public sealed record DeploymentInfo
{
    [Id(0)] public string Model { get; init; } = "";
    [Id(1)] public string Version { get; init; } = "";
    [Id(2)] public DeploymentState State { get; init; } = DeploymentState.Unloaded;
    [Id(3)] public string? Reason { get; init; }
    [Id(4)] public DeploymentSpec Spec { get; init; } = new();
    [Id(5)] public ReplicaInfo[] Replicas { get; init; } = [];
    [Id(6)] public ValidationReport? Validation { get; init; }
    [Id(7)] public DateTimeOffset UpdatedAt { get; init; }
    /// <summary>Ready and serving while a new spec (another replica count) loads and validates beside it.</summary>
    [Id(8)] public bool Updating { get; init; }
}

/// <summary>What a front end caches to send a request straight to a replica (one grain hop).</summary>
[GenerateSerializer, Immutable, Alias("medserve.route")]
public sealed record InferenceRoute(
    [property: Id(0)] string Model,
    [property: Id(1)] string Version,
    [property: Id(2)] DeploymentState State,
    [property: Id(3)] string? Reason,
    [property: Id(4)] string[] ReplicaKeys);

/// <summary>A registered, immutable model version.</summary>
[GenerateSerializer, Immutable, Alias("medserve.model-version")]
public sealed record ModelVersionInfo
{
    [Id(0)] public ModelManifest Manifest { get; init; } = new();
    [Id(1)] public string Sha256 { get; init; } = "";
    [Id(2)] public long SizeBytes { get; init; }
    [Id(3)] public DateTimeOffset RegisteredAt { get; init; }
    [Id(4)] public bool Deployed { get; init; }
}

/// <summary>A model and its versions.</summary>
[GenerateSerializer, Immutable, Alias("medserve.model-info")]
public sealed record ModelInfo
{
    [Id(0)] public string Name { get; init; } = "";
    [Id(1)] public ModelVersionInfo[] Versions { get; init; } = [];
    /// <summary>The version a call without a version goes to: the one set explicitly, else the highest deployed.</summary>
    [Id(2)] public string? DefaultVersion { get; init; }
}

/// <summary>Who may change a deployment how: one home for the rule the HTTP API, the web app and the CLI apply.</summary>
public static class DeploymentRules
{
    /// <summary>
    /// An operator (who may not manage models) re-scales what runs: replicas and batching of a running deployment, on the
    /// accelerator it runs on. Answers the spec to apply (the current accelerator kept); anything else is Forbidden.
    /// </summary>
    public static DeploymentSpec ForOperator(DeploymentInfo current, DeploymentSpec spec) =>
        current.State == DeploymentState.Unloaded || (spec.Accelerator is not null && spec.Accelerator != current.Spec.Accelerator)
            ? throw MedServeException.Forbidden("an operator may change the replicas of a running deployment (and its batching); deploying a version or changing its accelerator is a model manager's")
            : spec with { Accelerator = current.Spec.Accelerator };
}
