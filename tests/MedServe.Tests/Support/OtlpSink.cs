using System.Net;

namespace MedServe.Tests.Support;

/// <summary>
/// A minimal OTLP/HTTP receiver on a free loopback port: answers every export 200 and keeps the raw payloads
/// (protobuf, whose strings are plain UTF-8), so a test can search what a node process exported without a collector.
/// Start the node with <c>--OTEL_EXPORTER_OTLP_ENDPOINT</c> <see cref="Endpoint"/> and <c>--OTEL_EXPORTER_OTLP_PROTOCOL http/protobuf</c>.
/// </summary>
public sealed class OtlpSink : IAsyncDisposable
{
    private readonly HttpListener _listener = new();
    private readonly MemoryStream _received = new();
    private readonly Lock _gate = new();
    private readonly Task _loop;
    private int _exports;

    public OtlpSink()
    {
        var port = NodeProcess.FreePort();
        Endpoint = $"http://127.0.0.1:{port}";
        _listener.Prefixes.Add(Endpoint + "/");
        _listener.Start();
        _loop = Task.Run(ServeAsync);
    }

    public string Endpoint { get; }

    /// <summary>The arguments that point a node's trace exporter here.</summary>
    public string[] NodeArgs => ["--OTEL_EXPORTER_OTLP_ENDPOINT", Endpoint, "--OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"];

    /// <summary>Export requests received so far.</summary>
    public int Exports => Volatile.Read(ref _exports);

    /// <summary>Every payload received so far, concatenated.</summary>
    public byte[] Received()
    {
        lock (_gate)
        {
            return _received.ToArray();
        }
    }

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            using (var body = new MemoryStream())
            {
                await context.Request.InputStream.CopyToAsync(body);
                lock (_gate)
                {
                    body.WriteTo(_received);
                }
            }
            Interlocked.Increment(ref _exports);
            context.Response.StatusCode = 200;
            context.Response.ContentType = "application/x-protobuf";
            context.Response.ContentLength64 = 0;
            context.Response.Close();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Stop();
        _listener.Close();
        await _loop;
    }
}
