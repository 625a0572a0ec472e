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
/// requests (so they batch with them and wait behind them), and reports each delivery's answers to the job.
/// A delivery is acknowledged to the stream at once and runs in the background, so several deliveries of a
/// job are in the queues together. A full queue (429) or a replica moving (503) is retried with backoff; any
/// other error is that item's own answer.
/// </summary>
[ImplicitStreamSubscription(JobStreams.Namespace)]
internal sealed class JobWorkerGrain(ILogger<JobWorkerGrain> logger) : Grain, IJobWorkerGrain, IStreamSubscriptionObserver, IAsyncObserver<JobWork>
{
    private static readonly TimeSpan RetryFor = TimeSpan.FromMinutes(2);

    private ModelRouter? _router;

    public async Task OnSubscribed(IStreamSubscriptionHandleFactory handleFactory)
    {
        await handleFactory.Create<JobWork>().ResumeAsync(this);
    }

    public Task OnNextAsync(JobWork work, StreamSequenceToken? token = null)
    {
        _router ??= new ModelRouter(GrainFactory);
        _ = RunAsync(work);
        return Task.CompletedTask;
    }

    public Task OnCompletedAsync() => Task.CompletedTask;

    public Task OnErrorAsync(Exception ex) => Task.CompletedTask;

    private async Task RunAsync(JobWork work)
    {
        try
        {
            var answers = await Task.WhenAll(work.Items.Select(item => RunItemAsync(work, item)));
            await GrainFactory.GetGrain<IJobGrain>(work.JobId).ReportAsync(work.Delivery, answers);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            // The job grain could not be told (its silo is going away): the lease sends these items again.
            Log.JobReportFailed(logger, work.JobId, work.Delivery, e.GetType().Name);
        }
    }

    private async Task<JobItemResult> RunItemAsync(JobWork work, JobItem item)
    {
        var request = new InferenceRequest(item.Inputs, work.Outputs, item.Id) { Priority = RequestPriority.Job };
        var started = Stopwatch.GetTimestamp();
        var backoff = TimeSpan.FromMilliseconds(20);
        while (true)
        {
            try
            {
                var response = await _router!.InferAsync(work.Model, work.Version, request);
                return new JobItemResult(item.Id, response.Outputs);
            }
            catch (Exception e) when (IsRetryable(e) && Stopwatch.GetElapsedTime(started) < RetryFor)
            {
                await Task.Delay(backoff);
                backoff = TimeSpan.FromMilliseconds(Math.Min(backoff.TotalMilliseconds * 2, 1000));
            }
            catch (MedServeException e)
            {
                return new JobItemResult(item.Id, null, e.Message);
            }
        }
    }

    private static bool IsRetryable(Exception e) =>
        e is MedServeException { IsRetryable: true } or MedServeException { Kind: ErrorKind.Timeout } or TimeoutException or SiloUnavailableException or OrleansMessageRejectionException;
}
