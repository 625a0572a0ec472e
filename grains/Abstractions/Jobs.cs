namespace MedServe;

/// <summary>The life of an async job.</summary>
public enum JobState
{
    /// <summary>Items are being fed through the job stream and answered.</summary>
    Running,
    /// <summary>Every item has an answer (a result or its own error).</summary>
    Completed,
    /// <summary>Stopped by a user; items answered so far keep their results.</summary>
    Cancelled,
}

/// <summary>One unit of work of a job: a record or a tensor set, with the id its result is known by.</summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("medserve.job-item")]
public sealed record JobItem(
    [property: Id(0)] string Id,
    [property: Id(1)] Tensor[] Inputs)
{
    /// <summary>
    /// Set when the item could not be read (a CSV row with a bad field, named with its line): it has no inputs, is never
    /// run, and is answered with this error, while the job's other items run.
    /// </summary>
    [Id(2)] public string? Error { get; init; }
}

/// <summary>The answer to one item: its outputs, or the error that item alone met.</summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("medserve.job-item-result")]
public sealed record JobItemResult(
    [property: Id(0)] string ItemId,
    [property: Id(1)] Tensor[]? Outputs,
    [property: Id(2)] string? Error = null);

/// <summary>What a user submits: the model (default version unless given), the items, the outputs wanted.</summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("medserve.job-submission")]
public sealed record JobSubmission
{
    [Id(0)] public string Model { get; init; } = "";
    [Id(1)] public string? Version { get; init; }
    [Id(2)] public JobItem[] Items { get; init; } = [];
    /// <summary>Outputs to keep; all when empty.</summary>
    [Id(3)] public string[]? Outputs { get; init; }
    /// <summary>Where the items came from (e.g. <c>csv</c>, <c>tensors</c>): shown, never the data itself.</summary>
    [Id(4)] public string Source { get; init; } = "tensors";
    /// <summary>The key id of whoever submitted it: only they (and admins) see its inputs and results.</summary>
    [Id(5)] public string? Owner { get; init; }
}

/// <summary>A job as users see it: progress (done, failed, rate, ETA) and where it runs.</summary>
[GenerateSerializer, Immutable, Alias("medserve.job-info")]
public sealed record JobInfo
{
    [Id(0)] public string Id { get; init; } = "";
    [Id(1)] public string Model { get; init; } = "";
    [Id(2)] public string Version { get; init; } = "";
    [Id(3)] public JobState State { get; init; }
    [Id(4)] public int Total { get; init; }
    /// <summary>Items answered with a result.</summary>
    [Id(5)] public int Succeeded { get; init; }
    /// <summary>Items answered with their own error (bad values, a model that refused them).</summary>
    [Id(6)] public int Failed { get; init; }
    /// <summary>Items answered per second, recently.</summary>
    [Id(7)] public double ItemsPerSecond { get; init; }
    /// <summary>Seconds until every item is answered at the recent rate; null when unknown or done.</summary>
    [Id(8)] public double? EtaSeconds { get; init; }
    [Id(9)] public DateTimeOffset CreatedAt { get; init; }
    [Id(10)] public DateTimeOffset UpdatedAt { get; init; }
    [Id(11)] public string Source { get; init; } = "";
    /// <summary>The silo the job's grain runs on now.</summary>
    [Id(12)] public string Silo { get; init; } = "";
    /// <summary>Times items were sent again after their answer did not come back (a silo died): at-least-once.</summary>
    [Id(13)] public int Redeliveries { get; init; }
    /// <summary>The key id of whoever submitted it.</summary>
    [Id(14)] public string? Owner { get; init; }

    public int Answered => Succeeded + Failed;
}

/// <summary>
/// One async job (key: job id). It keeps its items and results in grain state, feeds the items through the job
/// stream at job priority, takes answers back de-duplicated by item id, and sends again what is not answered
/// within a lease: a silo crash loses no item and duplicates no result.
/// </summary>
public interface IJobGrain : IGrainWithStringKey
{
    /// <summary>
    /// Starts the job. Submitting the same content again under the same id (a retry) answers the existing job; other
    /// content under an id that exists is a conflict naming the id. (Storing a big job's items takes a while.)
    /// </summary>
    [ResponseTimeout("00:02:00")]
    Task<JobInfo> SubmitAsync(JobSubmission submission);

    /// <summary>The job and its progress, or null when no job has this id.</summary>
    Task<JobInfo?> GetAsync();

    /// <summary>Stops feeding items; answers already in are kept.</summary>
    Task<JobInfo> CancelAsync();

    /// <summary>Cancels the job and deletes its items and results.</summary>
    Task DeleteAsync();

    /// <summary>Results so far, in item order (reads every stored chunk: prefer the paged overload for big jobs).</summary>
    [ResponseTimeout("00:02:00")]
    Task<JobItemResult[]> GetResultsAsync();

    /// <summary>Results so far of the items at positions <paramref name="offset"/> to offset + count - 1, in item order.</summary>
    [ResponseTimeout("00:02:00")]
    Task<JobItemResult[]> GetResultsAsync(int offset, int count);

    /// <summary>
    /// Answers from a worker for one delivery (items by position); an item answered before is ignored. Items in
    /// <paramref name="retryLater"/> were not run for a reason not their own (the runtime failed): they are sent again
    /// later, up to the job's attempt limit, instead of getting an error.
    /// </summary>
    Task ReportAsync(long delivery, int[] indexes, JobItemResult[] results, JobRetry? retryLater = null);

    /// <summary>A worker still has the delivery's items waiting (a full queue): its lease starts again. False when it is no longer open.</summary>
    Task<bool> RenewAsync(long delivery);

    /// <summary>Wakes a running job after a silo loss or a restart (idempotent).</summary>
    Task ResumeAsync();
}

/// <summary>
/// The job list (key 0): a small summary per job (id, model, version, state, counts, times), kept up to date by the
/// job grains, so listing jobs wakes none of them.
/// </summary>
public interface IJobIndexGrain : IGrainWithIntegerKey
{
    /// <summary>Every job, newest first.</summary>
    Task<JobInfo[]> ListAsync();

    /// <summary>Ids of the jobs still running (to resume after a silo loss).</summary>
    Task<string[]> ListRunningAsync();

    /// <summary>One job's last summary, or null.</summary>
    Task<JobInfo?> GetAsync(string id);

    /// <summary>
    /// For a submit without an id: the id of a job submitted with the same content key in the last
    /// <paramref name="windowSeconds"/> seconds, or <paramref name="proposedId"/> (then remembered for that window).
    /// </summary>
    Task<string> ClaimSubmissionAsync(string contentKey, string proposedId, int windowSeconds);

    /// <summary>Records a job's summary (a job grain calls this on state changes and at most once a second).</summary>
    Task SetAsync(JobInfo job);

    /// <summary>Forgets a deleted job.</summary>
    Task RemoveAsync(string id);
}

/// <summary>Names of the job stream.</summary>
public static class JobStreams
{
    /// <summary>The stream provider (Orleans memory streams; durability is the job grain's, not the stream's).</summary>
    public const string Provider = "medserve-jobs";

    /// <summary>Stream namespace; the stream key is the job id, which is also the worker grain's key.</summary>
    public const string Namespace = "medserve.job-items";
}

/// <summary>Items of a delivery that could not run for a reason not their own (out of memory, an execution provider error), by position.</summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("medserve.job-retry")]
public sealed record JobRetry(
    [property: Id(0)] int[] Indexes,
    [property: Id(1)] string Reason);

/// <summary>A delivery of items through the job stream.</summary>
[GenerateSerializer, Immutable, SuppressReferenceTracking, Alias("medserve.job-work")]
public sealed record JobWork(
    [property: Id(0)] string JobId,
    [property: Id(1)] long Delivery,
    [property: Id(2)] string Model,
    [property: Id(3)] string Version,
    [property: Id(4)] JobItem[] Items,
    [property: Id(5)] string[]? Outputs,
    [property: Id(6)] int[] Indexes,
    [property: Id(7)] int RowsPerRequest = 1);
