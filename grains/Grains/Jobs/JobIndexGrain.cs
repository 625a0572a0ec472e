namespace MedServe.Grains.Jobs;

/// <summary>The stored summaries of every job, by id.</summary>
[GenerateSerializer, Alias("medserve.job-index-state")]
public sealed class JobIndexState
{
    [Id(0)] public Dictionary<string, JobInfo> Jobs { get; set; } = new(StringComparer.Ordinal);
}

/// <summary>
/// The job list (key 0): one small <see cref="JobInfo"/> per job, pushed by the job grain when its state changes and
/// at most once a second while it runs. Listing reads only this, so it wakes no job grain. A change of state (a new,
/// ended or deleted job) is written at once; progress alone is written at most once a second.
/// </summary>
internal sealed class JobIndexGrain(
    [PersistentState("job-index", StorageNames.State)] IPersistentState<JobIndexState> state) : Grain, IJobIndexGrain
{
    private static readonly TimeSpan FlushEvery = TimeSpan.FromSeconds(1);
    private bool _dirty;
    private IDisposable? _timer;

    public Task<JobInfo[]> ListAsync() =>
        Task.FromResult(state.State.Jobs.Values.OrderByDescending(j => j.CreatedAt).ThenBy(j => j.Id, StringComparer.Ordinal).ToArray());

    public Task<string[]> ListRunningAsync() =>
        Task.FromResult(state.State.Jobs.Values.Where(j => j.State == JobState.Running).Select(j => j.Id).ToArray());

    public Task<JobInfo?> GetAsync(string id) => Task.FromResult(state.State.Jobs.GetValueOrDefault(id));

    public Task SetAsync(JobInfo job)
    {
        var changed = !state.State.Jobs.TryGetValue(job.Id, out var before) || before.State != job.State;
        state.State.Jobs[job.Id] = job;
        if (changed)
        {
            return WriteAsync();
        }
        _dirty = true;
        _timer ??= this.RegisterGrainTimer(OnTimerAsync, FlushEvery, FlushEvery);
        return Task.CompletedTask;
    }

    private readonly Dictionary<string, (string Id, long Expires)> _claims = new(StringComparer.Ordinal);

    public Task<string> ClaimSubmissionAsync(string contentKey, string proposedId, int windowSeconds)
    {
        var now = Environment.TickCount64;
        foreach (var stale in _claims.Where(c => c.Value.Expires <= now).Select(c => c.Key).ToList())
        {
            _claims.Remove(stale);
        }
        if (_claims.TryGetValue(contentKey, out var claim))
        {
            return Task.FromResult(claim.Id);
        }
        _claims[contentKey] = (proposedId, now + (windowSeconds * 1000L));
        return Task.FromResult(proposedId);
    }

    public Task RemoveAsync(string id) => state.State.Jobs.Remove(id) ? WriteAsync() : Task.CompletedTask;

    private async Task OnTimerAsync(CancellationToken cancellationToken)
    {
        if (_dirty)
        {
            await WriteAsync();
        }
        else
        {
            _timer?.Dispose();
            _timer = null;
        }
    }

    private async Task WriteAsync()
    {
        _dirty = false;
        await state.WriteOrReloadAsync(DeactivateOnIdle);
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        if (_dirty)
        {
            await state.WriteStateAsync();
        }
    }
}
