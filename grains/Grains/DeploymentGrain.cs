using MedServe.Grains.Placement;
using MedServe.Inference.Runtime;
using Microsoft.Extensions.Logging;

namespace MedServe.Grains;

/// <summary>What a deployment must survive a restart with: whether it is wanted, and how.</summary>
[GenerateSerializer, Alias("medserve.deployment-state")]
public sealed class DeploymentRecord
{
    [Id(0)] public bool Wanted { get; set; }
    [Id(1)] public DeploymentSpec Spec { get; set; } = new();
    /// <summary>Replicas that may hold sessions (the most ever asked for), so scale-down and undeploy free them all.</summary>
    [Id(2)] public int ReplicaSlots { get; set; }
    /// <summary>The accelerator the replicas were placed for (spec's, else the manifest's).</summary>
    [Id(3)] public string Accelerator { get; set; } = Capabilities.Any;
}

/// <summary>
/// One deployed model version and its state machine: Loading -> Validating -> Ready, or Failed with a reason;
/// Unloaded when not wanted. The rollout runs in the background so callers can watch it.
/// Always active: a deployment that is wanted keeps its state machine (and its route) in memory.
/// </summary>
[CollectionAgeLimit(AlwaysActive = true)]
internal sealed class DeploymentGrain(
    [PersistentState("deployment", StorageNames.State)] IPersistentState<DeploymentRecord> record,
    ILogger<DeploymentGrain> logger) : Grain, IDeploymentGrain
{
    public const int MaxReplicas = 64;

    private DeploymentState _state = DeploymentState.Unloaded;
    private string? _reason;
    private ReplicaInfo[] _replicas = [];
    private ValidationReport? _validation;
    private DateTimeOffset _updatedAt = DateTimeOffset.UtcNow;
    private bool _updating; // Ready, with a new replica set loading beside the serving one
    private int _generation;
    // Bumped on every change of which replicas serve (SetReplicas). Reads that refresh where replicas live await
    // other grains; they write back only if the set is still the one they read (never a stale set over a new one).
    private int _replicaSet;
    // The rollout running now. A new one starts only after it ended (a superseded rollout stops at its next await),
    // so one rollout at a time loads and frees replicas: a stale one never frees what a newer one loaded.
    private Task _rollout = Task.CompletedTask;
    private TaskCompletionSource<DeploymentInfo> _settled = NewSettled();
    private readonly List<(DeploymentState State, TaskCompletionSource<DeploymentInfo> Waiter)> _stateWaiters = [];

    private string Key => this.GetPrimaryKeyString();

    private (string Model, string Version) Id => GrainKeys.ParseDeployment(Key);

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (record.State.Wanted)
        {
            StartRollout();
        }
        return Task.CompletedTask;
    }

    public async Task<DeploymentInfo> DeployAsync(DeploymentSpec spec)
    {
        if (spec.Replicas is < 1 or > MaxReplicas)
        {
            throw MedServeException.Invalid($"replicas must be between 1 and {MaxReplicas}", "replicas");
        }
        if (spec.Accelerator is not (null or "cpu" or "gpu" or "any"))
        {
            throw MedServeException.Invalid("accelerator must be cpu, gpu or any", "accelerator");
        }
        var (model, version) = Id;
        var modelGrain = GrainFactory.GetGrain<IModelGrain>(model);
        var versionInfo = await modelGrain.GetVersionAsync(version)
            ?? throw MedServeException.NotFound($"model '{model}' has no version '{version}'");

        // JSON may say "batching": null; that means the default policy.
        var batching = spec.Batching ?? new BatchingPolicy();
        batching = batching with { PreferredBatchSizes = batching.PreferredBatchSizes ?? [] };
        spec = spec with { Batching = batching };
        if (batching.Problem() is { } problem)
        {
            throw MedServeException.Invalid($"{problem.Field} {problem.Message}", problem.Field);
        }
        var serving = record.State.Wanted && _state is not (DeploymentState.Failed or DeploymentState.Unloaded);
        if (serving && record.State.Spec == spec)
        {
            return Info();
        }
        var accelerator = spec.Accelerator ?? versionInfo.Manifest.Accelerator;
        if (serving && _state == DeploymentState.Ready && !_updating && record.State.Spec with { Batching = batching } == spec)
        {
            // Only the batching policy changed: every replica takes it in place; nothing reloads, nothing is dropped.
            // Replicas first, record last: if one cannot be reached the record still differs, so a retry does it again.
            await Task.WhenAll(_replicas.Select(r => GrainFactory.GetGrain<IReplicaGrain>(r.Key).SetBatchingAsync(batching)));
            record.State.Spec = spec;
            await record.WriteStateAsync();
            _updatedAt = DateTimeOffset.UtcNow;
            return Info();
        }
        // A Ready deployment that only changes its replica count keeps serving from the replicas it has while the
        // new set loads and validates.
        var keepServing = _state == DeploymentState.Ready && accelerator == record.State.Accelerator;
        var servingSpec = record.State.Spec;
        if (accelerator != record.State.Accelerator && record.State.ReplicaSlots > 0)
        {
            // Replicas placed for another accelerator live under other keys: free them first.
            _generation++;
            await UnloadReplicasAsync(0);
            record.State.ReplicaSlots = 0;
        }
        var before = (record.State.Accelerator, record.State.Wanted, record.State.Spec, record.State.ReplicaSlots);
        record.State.Accelerator = accelerator;
        record.State.Wanted = true;
        record.State.Spec = spec;
        record.State.ReplicaSlots = Math.Max(record.State.ReplicaSlots, spec.Replicas);
        try
        {
            await record.WriteStateAsync();
        }
        catch
        {
            // Storage unavailable (Redis restarting): nothing changed, so a retry must not look "unchanged".
            (record.State.Accelerator, record.State.Wanted, record.State.Spec, record.State.ReplicaSlots) = before;
            throw;
        }
        await modelGrain.SetDeployedAsync(version, true);
        await GrainFactory.GetGrain<ICatalogGrain>(0).SetDeploymentAsync(Key, true);
        StartRollout(keepServing ? servingSpec : null);
        return Info();
    }

    public async Task<DeploymentInfo> UndeployAsync()
    {
        var (model, version) = Id;
        if (!record.State.Wanted && _state == DeploymentState.Unloaded)
        {
            throw MedServeException.NotFound($"{model}:{version} is not deployed");
        }
        _generation++;
        record.State.Wanted = false;
        await record.WriteStateAsync();
        await UnloadReplicasAsync(0);
        record.State.ReplicaSlots = 0;
        await record.WriteStateAsync();
        SetState(DeploymentState.Unloaded, null);
        SetReplicas([]);
        _validation = null;
        await GrainFactory.GetGrain<IModelGrain>(model).SetDeployedAsync(version, false);
        await GrainFactory.GetGrain<ICatalogGrain>(0).SetDeploymentAsync(Key, false);
        return Info();
    }

    public async Task<DeploymentInfo> GetAsync()
    {
        if (_state == DeploymentState.Ready && _replicas.Length > 0)
        {
            // Replicas move when their silo dies (they reactivate on a compatible one): show where they are now.
            var (generation, set) = (_generation, _replicaSet);
            var replicas = _replicas;
            try
            {
                var statuses = await Task.WhenAll(replicas.Select(r => GrainFactory.GetGrain<IReplicaGrain>(r.Key).GetStatusAsync()))
                    .WaitAsync(TimeSpan.FromSeconds(2));
                if (generation != _generation || set != _replicaSet)
                {
                    return Info(); // a rollout, scale or check replaced the set meanwhile: it is newer than what was read
                }
                Relocate(replicas.Zip(statuses, (r, s) => (r, (ReplicaStatus?)s)));
            }
            catch (Exception e) when (e is TimeoutException or OrleansException)
            {
                // A silo is going away right now: answer with what is known.
            }
        }
        return Info();
    }

    public Task<InferenceRoute> GetRouteAsync()
    {
        var (model, version) = Id;
        var keys = _state == DeploymentState.Ready ? _replicas.Select(r => r.Key).ToArray() : [];
        return Task.FromResult(new InferenceRoute(model, version, _state, _reason, keys));
    }

    public Task RetryIfPendingAsync()
    {
        if (record.State.Wanted && _state == DeploymentState.Pending)
        {
            StartRollout();
        }
        return Task.CompletedTask;
    }

    public async Task CheckReplicasAsync()
    {
        if (!record.State.Wanted || _state != DeploymentState.Ready || _updating || _replicas.Length == 0)
        {
            return;
        }
        var (generation, set) = (_generation, _replicaSet);
        var replicas = _replicas;
        var checks = replicas.Select(async r =>
        {
            try
            {
                // Reactivates a replica whose silo left on a compatible one (it reloads its session there).
                var status = await GrainFactory.GetGrain<IReplicaGrain>(r.Key).GetStatusAsync().WaitAsync(TimeSpan.FromSeconds(45));
                return (Replica: r, Status: (ReplicaStatus?)status, NoSilo: false);
            }
            catch (Exception e) when (IsNoCompatibleSilo(e))
            {
                return (Replica: r, Status: (ReplicaStatus?)null, NoSilo: true);
            }
        }).ToList();
        var results = await Task.WhenAll(checks);
        if (generation != _generation || set != _replicaSet)
        {
            return; // a deploy, undeploy or rollout took over meanwhile
        }
        if (results.All(c => c.NoSilo))
        {
            // Not a failure: the silos that could host it are gone. A joining one brings it back (PendingDeploymentWaker).
            SetReplicas([]);
            _generation++;
            SetState(DeploymentState.Pending, $"no {record.State.Accelerator} silo is left in the cluster to host it; it starts again when one joins");
            return;
        }
        if (results.All(c => c.Status is { Loaded: true }))
        {
            Relocate(results.Select(c => (c.Replica, c.Status)));
            return;
        }
        // Some replicas could not come back: serve from the others while the full set rolls out again.
        var serving = results.Where(c => c.Status is { Loaded: true }).Select(c => Moved(c.Replica, c.Status!)).ToArray();
        if (serving.Length > 0)
        {
            SetReplicas(serving);
        }
        StartRollout(serving.Length > 0 ? record.State.Spec : null);
    }

    public async Task<DeploymentInfo> WaitSettledAsync(TimeSpan timeout)
    {
        if (_state is DeploymentState.Loading or DeploymentState.Validating || _updating)
        {
            try
            {
                await _settled.Task.WaitAsync(timeout);
            }
            catch (TimeoutException)
            {
                // Answer with the state as it is; the caller sees it is still loading.
            }
        }
        return Info();
    }

    public async Task<DeploymentInfo> WaitForStateAsync(DeploymentState state, TimeSpan timeout)
    {
        if (_state != state)
        {
            var waiter = new TaskCompletionSource<DeploymentInfo>(TaskCreationOptions.RunContinuationsAsynchronously);
            _stateWaiters.Add((state, waiter));
            try
            {
                await waiter.Task.WaitAsync(timeout);
            }
            catch (TimeoutException)
            {
                _stateWaiters.RemoveAll(w => w.Waiter == waiter);
            }
        }
        return Info();
    }

    private static TaskCompletionSource<DeploymentInfo> NewSettled() => new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>
    /// Starts a rollout of the recorded spec. With <paramref name="servingSpec"/> (a Ready deployment changing its
    /// replica count) the current replicas keep serving until the new set is validated; if the change fails, they
    /// go on serving under <paramref name="servingSpec"/> and the reason says what failed.
    /// </summary>
    private void StartRollout(DeploymentSpec? servingSpec = null)
    {
        var keepServing = servingSpec is not null;
        var generation = ++_generation;
        if (!keepServing)
        {
            SetReplicas([]);
            _validation = null;
            SetState(DeploymentState.Loading, null);
        }
        else
        {
            // Still Ready and serving; callers that wait for the change to settle wait for this rollout.
            _updating = true;
            if (_settled.Task.IsCompleted)
            {
                _settled = NewSettled();
            }
        }
        // Runs on this grain's scheduler, interleaved with calls, so status can be read while it loads.
        _rollout = RolloutAsync(generation, servingSpec, _rollout);
    }

    private async Task RolloutAsync(int generation, DeploymentSpec? servingSpec, Task previous)
    {
        // Deploy and Undeploy interleave with this rollout: after every await, stop if a newer one took over.
        bool Current() => generation == _generation;
        try
        {
            await previous;
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The previous rollout reports its own outcome; this one only waited for it to let go of the replicas.
        }
        if (!Current())
        {
            return;
        }
        var keepServing = servingSpec is not null;
        var serving = _replicas.Select(r => r.Key).ToHashSet(StringComparer.Ordinal);
        var (model, version) = Id;
        var spec = record.State.Spec;
        try
        {
            var info = await GrainFactory.GetGrain<IModelGrain>(model).GetVersionAsync(version)
                ?? throw MedServeException.NotFound($"model '{model}' has no version '{version}'");
            if (!Current())
            {
                return;
            }
            var replicas = Enumerable.Range(0, spec.Replicas).Select(Replica).ToArray();
            // One by one, telling placement where the others already are, so replicas spread over silos.
            var loaded = new ReplicaInfo[replicas.Length];
            for (var i = 0; i < replicas.Length; i++)
            {
                RequestContext.Set(ReplicaSpreadPlacementDirector.AvoidKey, string.Join(',', loaded.Take(i).Select(r => r.Silo)));
                try
                {
                    loaded[i] = await LoadAsync(replicas[i], info, spec.Batching, Current);
                }
                finally
                {
                    RequestContext.Remove(ReplicaSpreadPlacementDirector.AvoidKey);
                }
                if (!Current())
                {
                    return;
                }
            }
            if (!Current())
            {
                return;
            }
            if (!keepServing)
            {
                SetReplicas(loaded);
                SetState(DeploymentState.Validating, null);
            }
            ValidationReport? report = null;
            foreach (var replica in replicas.Where(r => !serving.Contains(r.GetPrimaryKeyString())))
            {
                // Every new replica validates: replicas on other silos may run other execution providers. (Those
                // already serving were validated when they loaded, and their queues are busy with traffic.)
                report = await ValidationRunner.RunAsync(info.Manifest, request => replica.InferAsync(request));
                if (!Current())
                {
                    return;
                }
                if (!report.Passed)
                {
                    break;
                }
            }
            _validation = report ?? _validation;
            if (report is { Passed: false } && keepServing)
            {
                await KeepServingAsync(servingSpec!, serving, Current, $"validation failed: {report.Summary}");
                return;
            }
            if (report is { Passed: false })
            {
                SetReplicas([]);
                Fail($"validation failed: {report.Summary}");
                await UnloadQuietlyAsync(0);
                return;
            }
            // The new set takes the traffic; then replicas beyond the spec are freed (scale-down). A front end that
            // still routes to a freed one for the second its route is cached is answered NotReady and retries.
            SetReplicas(loaded);
            await UnloadQuietlyAsync(spec.Replicas);
            if (!Current())
            {
                return;
            }
            if (record.State.ReplicaSlots > spec.Replicas)
            {
                record.State.ReplicaSlots = spec.Replicas;
                await record.WriteStateAsync();
                if (!Current())
                {
                    return;
                }
            }
            SetState(DeploymentState.Ready, null);
        }
        catch (Exception e) when (Current() && keepServing)
        {
            await KeepServingAsync(servingSpec!, serving, Current, IsNoCompatibleSilo(e)
                ? $"no {record.State.Accelerator} silo in the cluster can host another replica"
                : e is MedServeException ? e.Message : e.GetType().Name);
        }
        catch (Exception e) when (Current() && IsNoCompatibleSilo(e))
        {
            // Not a failure: no silo offers what this deployment needs yet. A joining silo retries it.
            SetReplicas([]);
            SetState(DeploymentState.Pending, $"no {record.State.Accelerator} silo in the cluster can host it; it starts when one joins");
        }
        catch (Exception e) when (Current())
        {
            SetReplicas([]);
            Fail(e is MedServeException ? e.Message : $"{e.GetType().Name}: {e.Message}");
            await UnloadQuietlyAsync(0);
        }
        catch (Exception)
        {
            // A newer rollout or an undeploy superseded this one; its outcome is theirs to report.
        }
    }

    /// <summary>
    /// Loads one replica. A silo that placement chose may be leaving right then (a graceful stop is in progress and
    /// membership has not said so yet): the call fails with the silo unavailable. That is the cluster moving, not the
    /// model failing, so it is tried again (placement then picks among the silos that remain) a few times.
    /// </summary>
    private async Task<ReplicaInfo> LoadAsync(IReplicaGrain replica, ModelVersionInfo info, BatchingPolicy batching, Func<bool> current)
    {
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await replica.LoadAsync(info.Manifest, info.Sha256, batching);
            }
            catch (Exception e) when (attempt < LoadAttempts && IsSiloLeaving(e) && current())
            {
                Log.ReplicaLoadRetried(logger, replica.GetPrimaryKeyString(), e.GetType().Name, attempt);
                await Task.Delay(TimeSpan.FromSeconds(attempt));
            }
        }
    }

    private const int LoadAttempts = 6;

    private static bool IsSiloLeaving(Exception e) =>
        e is SiloUnavailableException or OrleansMessageRejectionException
        || e.InnerException is { } inner && IsSiloLeaving(inner);

    /// <summary>
    /// A re-spec of a serving deployment failed: free the replicas loaded for it, go on serving with the ones that
    /// were, under the spec they serve, and say why.
    /// </summary>
    private async Task KeepServingAsync(DeploymentSpec servingSpec, HashSet<string> serving, Func<bool> current, string why)
    {
        var wanted = record.State.Spec.Replicas;
        record.State.Spec = servingSpec;
        try
        {
            await record.WriteStateAsync();
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Log.UnloadFailed(logger, Key, e.GetType().Name);
        }
        var extra = Enumerable.Range(0, Math.Max(wanted, servingSpec.Replicas)).Select(Replica).Where(r => !serving.Contains(r.GetPrimaryKeyString()));
        foreach (var replica in extra)
        {
            try
            {
                await replica.UnloadAsync();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                Log.UnloadFailed(logger, Key, e.GetType().Name);
            }
        }
        if (!current())
        {
            return; // a newer deploy or undeploy took over while this one let go: its state is the one to show
        }
        SetState(DeploymentState.Ready, $"the change to {wanted} replicas failed and was rolled back ({why}); serving with {_replicas.Length}");
        Log.DeploymentFailed(logger, Key, _reason!);
    }

    /// <summary>Frees replicas without letting a failure to free them hide the state the user must see.</summary>
    private async Task UnloadQuietlyAsync(int keep)
    {
        try
        {
            await UnloadReplicasAsync(keep);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Log.UnloadFailed(logger, Key, e.GetType().Name);
        }
    }

    private static bool IsNoCompatibleSilo(Exception e) =>
        e is OrleansException && e.Message.Contains("No active nodes are compatible", StringComparison.Ordinal)
        || e.InnerException is { } inner && IsNoCompatibleSilo(inner)
        || e is AggregateException { InnerExceptions: var all } && all.Any(IsNoCompatibleSilo);

    private async Task UnloadReplicasAsync(int keep)
    {
        var slots = Math.Max(record.State.ReplicaSlots, record.State.Spec.Replicas);
        if (slots > keep)
        {
            await Task.WhenAll(Enumerable.Range(keep, slots - keep).Select(i => Replica(i).UnloadAsync()));
        }
    }

    private IReplicaGrain Replica(int index)
    {
        var (model, version) = Id;
        return GrainFactory.GetGrain<IReplicaGrain>(GrainKeys.Replica(model, version, index, record.State.Accelerator));
    }

    /// <summary>Replaces the set of replicas that serve; every such change goes through here.</summary>
    private void SetReplicas(ReplicaInfo[] replicas)
    {
        _replicas = replicas;
        _replicaSet++;
    }

    /// <summary>Where the same replicas live now (they move when their silo dies): the set itself does not change.</summary>
    private void Relocate(IEnumerable<(ReplicaInfo Replica, ReplicaStatus? Status)> statuses)
    {
        var now = statuses.Where(s => s.Status is { Loaded: true }).ToDictionary(s => s.Replica.Key, s => s.Status!, StringComparer.Ordinal);
        _replicas = [.. _replicas.Select(r => now.TryGetValue(r.Key, out var status) ? Moved(r, status) : r)];
    }

    private static ReplicaInfo Moved(ReplicaInfo replica, ReplicaStatus status) =>
        replica with { Silo = status.Silo, ExecutionProvider = status.ExecutionProvider ?? replica.ExecutionProvider };

    private void Fail(string reason)
    {
        SetState(DeploymentState.Failed, reason);
        Log.DeploymentFailed(logger, Key, reason);
    }

    private void SetState(DeploymentState state, string? reason)
    {
        _updating = false;
        _state = state;
        _reason = reason;
        _updatedAt = DateTimeOffset.UtcNow;
        if (state is DeploymentState.Loading or DeploymentState.Validating)
        {
            if (_settled.Task.IsCompleted)
            {
                _settled = NewSettled();
            }
        }
        else
        {
            _settled.TrySetResult(Info());
        }
        if (_stateWaiters.Count > 0)
        {
            var info = Info();
            foreach (var w in _stateWaiters.Where(w => w.State == state).ToList())
            {
                w.Waiter.TrySetResult(info);
                _stateWaiters.Remove(w);
            }
        }
        if (state != DeploymentState.Failed)
        {
            Log.DeploymentState(logger, Key, state, reason is null ? "" : $" ({reason})");
        }
    }

    private DeploymentInfo Info()
    {
        var (model, version) = Id;
        return new DeploymentInfo
        {
            Model = model,
            Version = version,
            State = _state,
            Reason = _reason,
            Spec = record.State.Spec,
            Replicas = _replicas,
            Validation = _validation,
            UpdatedAt = _updatedAt,
            Updating = _updating,
        };
    }
}
