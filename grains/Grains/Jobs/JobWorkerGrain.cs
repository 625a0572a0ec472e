using System.Diagnostics;
using MedServe.Routing;
using Microsoft.Extensions.Logging;
using Orleans.Streams;
using Orleans.Streams.Core;

namespace MedServe.Grains.Jobs;

/// <summary>A job's consumer of the job stream (implicit subscription: the stream key is this grain's key).</summary>
public interface IJobWorkerGrain : IGrainWithStringKey;

/// <summary>
/// Runs the items of a job's deliveries at job priority, through the same router and replica queues as online
/// requests, and reports each delivery's answers to the job. Items whose inputs agree in every dimension but the
/// first are stacked into one request of up to <see cref="JobWork.RowsPerRequest"/> rows (one queue entry, one model
/// run) and the outputs split back per item; a stacked request the model refuses is run item by item, so a bad item
/// fails alone. A delivery is acknowledged to the stream at once and runs in the background; while it waits (a full
/// queue, 429, or a replica moving, 503, retried with backoff) its lease is renewed every few seconds, so it is not
/// sent again meanwhile. A runtime failure that is not the items' fault (503 <see cref="ErrorKind.Unavailable"/>: out
/// of memory, an execution provider error) is tried <see cref="RuntimeFailureTries"/> times, then its items go back to
/// the job, which sends them again later (<see cref="JobRetry"/>): it never becomes their error at once. Any other
/// error is that item's own answer.
/// </summary>
[ImplicitStreamSubscription(JobStreams.Namespace)]
internal sealed class JobWorkerGrain(ILogger<JobWorkerGrain> logger, LocalReplicas local) : Grain, IJobWorkerGrain, IStreamSubscriptionObserver, IAsyncObserver<JobWork>
{
    private static readonly TimeSpan RetryFor = TimeSpan.FromMinutes(2);
    private static readonly TimeSpan RenewEvery = TimeSpan.FromSeconds(5);

    /// <summary>Tries of a request the runtime fails (Unavailable) before its items go back to the job for later.</summary>
    private const int RuntimeFailureTries = 3;

    private ModelRouter? _router;

    public async Task OnSubscribed(IStreamSubscriptionHandleFactory handleFactory)
    {
        await handleFactory.Create<JobWork>().ResumeAsync(this);
    }

    public Task OnNextAsync(JobWork work, StreamSequenceToken? token = null)
    {
        _router ??= new ModelRouter(GrainFactory, local); // a replica on this silo gets its items without a grain message
        _ = RunAsync(work);
        return Task.CompletedTask;
    }

    public Task OnCompletedAsync() => Task.CompletedTask;

    public Task OnErrorAsync(Exception ex) => Task.CompletedTask;

    private async Task RunAsync(JobWork work)
    {
        var job = GrainFactory.GetGrain<IJobGrain>(work.JobId);
        using var done = new CancellationTokenSource();
        var renewing = RenewAsync(job, work.Delivery, done.Token);
        try
        {
            var answers = new JobItemResult?[work.Items.Length];
            var later = new string?[work.Items.Length];
            await Task.WhenAll(Groups(work).Select(g => RunGroupAsync(work, g.Start, g.Count, answers, later)));
            await done.CancelAsync();
            await renewing;
            var answered = Enumerable.Range(0, answers.Length).Where(i => answers[i] is not null).ToArray();
            var deferred = Enumerable.Range(0, later.Length).Where(i => later[i] is not null).ToArray();
            await job.ReportAsync(work.Delivery, [.. answered.Select(i => work.Indexes[i])], [.. answered.Select(i => answers[i]!)],
                deferred.Length == 0 ? null : new JobRetry([.. deferred.Select(i => work.Indexes[i])], later[deferred[0]]!));
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The job grain could not be told (its silo is going away): the lease sends these items again.
            Log.JobReportFailed(logger, work.JobId, work.Delivery, e.GetType().Name);
        }
    }

    private static async Task RenewAsync(IJobGrain job, long delivery, CancellationToken ct)
    {
        try
        {
            while (true)
            {
                await Task.Delay(RenewEvery, ct);
                if (!await job.RenewAsync(delivery))
                {
                    return; // sent again already, or the job ended
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or TimeoutException or OrleansException)
        {
        }
    }

    /// <summary>Runs of consecutive items whose inputs stack (same names, types and non-batch dimensions), up to the rows allowed.</summary>
    private static IEnumerable<(int Start, int Count)> Groups(JobWork work)
    {
        var start = 0;
        long rows = 0;
        for (var i = 0; i < work.Items.Length; i++)
        {
            var itemRows = RowsOf(work.Items[i]);
            if (i > start && (itemRows < 0 || rows + itemRows > work.RowsPerRequest || !Stackable(work.Items[start], work.Items[i])))
            {
                yield return (start, i - start);
                start = i;
                rows = 0;
            }
            rows += Math.Max(itemRows, 1);
        }
        if (work.Items.Length > start)
        {
            yield return (start, work.Items.Length - start);
        }
    }

    private static long RowsOf(JobItem item)
    {
        if (item.Error is not null || item.Inputs.Length == 0)
        {
            return -1; // answered with its own error, never stacked
        }
        var first = item.Inputs[0].Shape;
        if (first.Length == 0 || first[0] < 1)
        {
            return -1;
        }
        foreach (var t in item.Inputs)
        {
            if (t.Shape.Length == 0 || t.Shape[0] != first[0])
            {
                return -1;
            }
        }
        return first[0]; // a loop, not All(): a closure per call was a fifth of a 200,000-row job's small allocations
    }

    private static bool Stackable(JobItem a, JobItem b)
    {
        if (a.Inputs.Length != b.Inputs.Length || RowsOf(a) < 0 || RowsOf(b) < 0)
        {
            return false;
        }
        for (var k = 0; k < a.Inputs.Length; k++)
        {
            var (x, y) = (a.Inputs[k], b.Inputs[k]);
            if (x.Name != y.Name || x.Datatype != y.Datatype || !x.Shape.AsSpan(1).SequenceEqual(y.Shape.AsSpan(1)))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>Runs items [start, start + count): each gets an answer, or a reason to be sent again later.</summary>
    private async Task RunGroupAsync(JobWork work, int start, int count, JobItemResult?[] answers, string?[] later)
    {
        if (count > 1)
        {
            var items = work.Items.AsSpan(start, count).ToArray();
            var rows = items.Select(RowsOf).ToArray();
            var total = rows.Sum();
            var stacked = new Tensor[items[0].Inputs.Length];
            for (var k = 0; k < stacked.Length; k++)
            {
                var first = items[0].Inputs[k];
                var data = new byte[items.Sum(i => (long)i.Inputs[k].Data.Length)];
                var offset = 0;
                foreach (var item in items)
                {
                    item.Inputs[k].Data.CopyTo(data, offset);
                    offset += item.Inputs[k].Data.Length;
                }
                var shape = (long[])first.Shape.Clone();
                shape[0] = total;
                stacked[k] = new Tensor(first.Name, first.Datatype, shape, data);
            }
            var outcome = await SendAsync(work, new InferenceRequest(stacked, work.Outputs, $"{items[0].Id}+{count - 1}") { Priority = RequestPriority.Job });
            if (outcome.Later is { } reason)
            {
                // The runtime failed, not the items: running them one by one would only fail again. Later, all of them.
                Array.Fill(later, reason, start, count);
                return;
            }
            if (outcome.Outputs is { } outputs && outputs.All(o => o.Shape.Length > 0 && o.Shape[0] == total))
            {
                long row = 0;
                for (var i = 0; i < count; i++)
                {
                    answers[start + i] = new JobItemResult(items[i].Id, [.. outputs.Select(o => Slice(o, row, rows[i], total))]);
                    row += rows[i];
                }
                return;
            }
            // Refused as a whole (one bad item) or outputs that do not follow the rows: item by item.
        }
        await Task.WhenAll(Enumerable.Range(start, count).Select(async i =>
        {
            var item = work.Items[i];
            if (item.Error is { } unreadable)
            {
                // A row that could not become a request (a bad CSV field) is answered with its error, never run.
                answers[i] = new JobItemResult(item.Id, null, unreadable);
                return;
            }
            var outcome = await SendAsync(work, new InferenceRequest(item.Inputs, work.Outputs, item.Id) { Priority = RequestPriority.Job });
            if (outcome.Later is { } reason)
            {
                later[i] = reason;
            }
            else
            {
                answers[i] = outcome.Outputs is { } outputs ? new JobItemResult(item.Id, outputs) : new JobItemResult(item.Id, null, outcome.Refused!.Message);
            }
        }));
    }

    private static Tensor Slice(Tensor output, long row, long rows, long total)
    {
        var rowBytes = output.Data.Length / total;
        var shape = (long[])output.Shape.Clone();
        shape[0] = rows;
        return new Tensor(output.Name, output.Datatype, shape, output.Data.AsSpan((int)(row * rowBytes), (int)(rows * rowBytes)).ToArray());
    }

    /// <summary>What one request came to: its outputs, the model's refusal (the items' own error), or a reason to try later.</summary>
    private readonly record struct Outcome(Tensor[]? Outputs, MedServeException? Refused, string? Later);

    /// <summary>
    /// Sends one request, retrying what may pass: a full queue, a replica moving or a timeout for up to
    /// <see cref="RetryFor"/>; a runtime failure (Unavailable) <see cref="RuntimeFailureTries"/> times, then "later".
    /// </summary>
    private async Task<Outcome> SendAsync(JobWork work, InferenceRequest request)
    {
        var started = Stopwatch.GetTimestamp();
        var backoff = TimeSpan.FromMilliseconds(20);
        var runtimeBackoff = TimeSpan.FromMilliseconds(100);
        var runtimeFailures = 0;
        while (true)
        {
            try
            {
                return new((await _router!.InferAsync(work.Model, work.Version, request)).Outputs, null, null);
            }
            catch (MedServeException e) when (e.Kind == ErrorKind.Unavailable)
            {
                if (++runtimeFailures >= RuntimeFailureTries)
                {
                    return new(null, null, e.Message);
                }
                await Task.Delay(runtimeBackoff);
                runtimeBackoff *= 2;
            }
            catch (Exception e) when (IsRetryable(e) && Stopwatch.GetElapsedTime(started) < RetryFor)
            {
                await Task.Delay(backoff);
                backoff = TimeSpan.FromMilliseconds(Math.Min(backoff.TotalMilliseconds * 2, 1000));
            }
            catch (MedServeException e)
            {
                return new(null, e, null);
            }
        }
    }

    private static bool IsRetryable(Exception e) =>
        e is MedServeException { IsRetryable: true } or MedServeException { Kind: ErrorKind.Timeout } or TimeoutException or SiloUnavailableException or OrleansMessageRejectionException;
}
