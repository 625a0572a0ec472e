using System.Diagnostics;
using System.Net.Http.Json;
using System.Net.Sockets;

namespace MedServe.Tests.Support;

/// <summary>
/// A steady stream of V2 infer requests: one sequential worker per stream (a front end and a model), each request
/// recorded with its answer, or with how it failed to get one. Used to show that silos joining, leaving and
/// crashing, or Redis restarting, lose no request silently and hang none.
/// </summary>
public sealed class InferLoad : IAsyncDisposable
{
    /// <summary>No request may take longer than this; the client gives up there and the test counts it as hung.</summary>
    public static readonly TimeSpan RequestBound = TimeSpan.FromSeconds(15);

    private readonly List<Outcome> _outcomes = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Task> _workers = [];
    private readonly long _started = Stopwatch.GetTimestamp();

    /// <summary>One request: which stream, when it started (seconds since the load began), how it ended.</summary>
    public sealed record Outcome(string Stream, double StartedAt, double Took, int Status, bool RetryAfter, bool Refused, string? Error, bool Reset = false)
    {
        /// <summary>200, or 503 with Retry-After: what a client may always see.</summary>
        public bool IsAnswered => Status == 200 || (Status == 503 && RetryAfter);

        public override string ToString() =>
            $"{Stream} at {StartedAt:F2}s took {Took:F2}s: {(Error is not null ? Error : Refused ? "connection refused" : Reset ? "connection reset before any answer" : $"{Status}{(RetryAfter ? " Retry-After" : "")}")}";
    }

    /// <summary>A stream: requests for <paramref name="model"/> sent to <paramref name="node"/>'s HTTP front end.</summary>
    public sealed record Stream(string Name, Uri Node, string Model, object Body);

    public InferLoad(params Stream[] streams)
    {
        foreach (var stream in streams)
        {
            _workers.Add(Task.Run(() => RunAsync(stream)));
        }
    }

    /// <summary>Seconds since the load began, on the clock outcomes are stamped with.</summary>
    public double Now => Stopwatch.GetElapsedTime(_started).TotalSeconds;

    public IReadOnlyList<Outcome> Outcomes
    {
        get
        {
            lock (_outcomes)
            {
                return [.. _outcomes];
            }
        }
    }

    /// <summary>Outcomes of requests that started at or after <paramref name="since"/>.</summary>
    public IReadOnlyList<Outcome> Since(double since) => [.. Outcomes.Where(o => o.StartedAt >= since)];

    /// <summary>
    /// Waits until every named stream has answered 200 <paramref name="inARow"/> times in a row to requests started
    /// after <paramref name="since"/>; fails naming the phase and the streams still failing after <paramref name="bound"/>.
    /// Returns when, after <paramref name="since"/>, the last request that did not answer 200 started (0 if none).
    /// </summary>
    public async Task<double> WhenServingAsync(string phase, double since, TimeSpan bound, int inARow, params string[] streams)
    {
        var deadline = Stopwatch.GetTimestamp() + (long)(bound.TotalSeconds * Stopwatch.Frequency);
        while (true)
        {
            var recent = Since(since);
            var lagging = streams.Where(s => recent.Where(o => o.Stream == s).TakeLast(inARow) is var last
                && (last.Count() < inARow || last.Any(o => o.Status != 200))).ToList();
            if (lagging.Count == 0)
            {
                var failures = recent.Where(o => o.Status != 200).ToList();
                return failures.Count == 0 ? 0 : failures.Max(o => o.StartedAt) - since;
            }
            Assert.True(Stopwatch.GetTimestamp() < deadline,
                $"{phase}: within {bound.TotalSeconds} s, no {inARow} successes in a row from {string.Join(", ", lagging)}; last outcomes:\n"
                + string.Join("\n", recent.Where(o => lagging.Contains(o.Stream)).TakeLast(10)));
            await Task.Delay(100);
        }
    }

    private async Task RunAsync(Stream stream)
    {
        // A connection per request would hide keep-alive behaviour; one client per stream, as a real caller has.
        using var http = new HttpClient { BaseAddress = stream.Node, Timeout = RequestBound };
        http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", NodeFixture.AdminKey);
        var path = $"/v2/models/{stream.Model}/infer";
        while (!_stop.IsCancellationRequested)
        {
            var startedAt = Now;
            var started = Stopwatch.GetTimestamp();
            Outcome outcome;
            try
            {
                using var response = await http.PostAsJsonAsync(path, stream.Body);
                await response.Content.ReadAsByteArrayAsync();
                outcome = new(stream.Name, startedAt, Stopwatch.GetElapsedTime(started).TotalSeconds, (int)response.StatusCode, response.Headers.Contains("Retry-After"), false, null);
            }
            catch (HttpRequestException e) when (e.InnerException is SocketException { SocketErrorCode: SocketError.ConnectionRefused })
            {
                // Never accepted: the caller knows nothing was done and may go elsewhere.
                outcome = new(stream.Name, startedAt, Stopwatch.GetElapsedTime(started).TotalSeconds, 0, false, true, null);
            }
            catch (HttpRequestException e) when (FindSocketError(e) == SocketError.ConnectionReset)
            {
                // Reset: the server closed the connection with the request unread. Only a stopping silo may do this.
                outcome = new(stream.Name, startedAt, Stopwatch.GetElapsedTime(started).TotalSeconds, 0, false, false, null, Reset: true);
            }
            catch (Exception e) when (!_stop.IsCancellationRequested)
            {
                // Hung (client timeout) or dropped after being accepted: never acceptable.
                outcome = new(stream.Name, startedAt, Stopwatch.GetElapsedTime(started).TotalSeconds, 0, false, false, Describe(e));
            }
            catch (Exception)
            {
                return;
            }
            lock (_outcomes)
            {
                _outcomes.Add(outcome);
            }
            if (outcome.Refused || outcome.Reset)
            {
                // Nothing listens there any more: don't spin.
                await Task.Delay(200);
            }
            else
            {
                // A steady stream, not a flood: the machine running the silos has two cores.
                await Task.Delay(10);
            }
        }
    }

    private static SocketError? FindSocketError(Exception e)
    {
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (x is SocketException se)
            {
                return se.SocketErrorCode;
            }
        }
        return null;
    }

    private static string Describe(Exception e)
    {
        var parts = new List<string>();
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            parts.Add(x is SocketException se ? $"SocketException({se.SocketErrorCode}): {x.Message}" : $"{x.GetType().Name}: {x.Message}");
        }
        return string.Join(" <- ", parts);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await Task.WhenAll(_workers);
        _stop.Dispose();
    }
}
