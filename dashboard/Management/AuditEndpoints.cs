using System.Text.Json;
using MedServe.Dashboard.Security;
using MedServe.Protocol;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace MedServe.Dashboard.Management;

/// <summary>
/// The audit trail (admin only): <c>GET /api/audit</c> searches it (actor, action, model, from, to) and exports JSON
/// lines (<c>format=jsonl</c>); <c>GET /api/audit/verify</c> walks the hash chain and names the first bad record.
/// </summary>
public static class AuditEndpoints
{
    private const int Page = 4096;

    /// <summary>One record per line: the MedServe JSON conventions, not indented.</summary>
    private static readonly JsonSerializerOptions Compact = new(ManifestJson.Options) { WriteIndented = false };

    public static IEndpointRouteBuilder MapAuditApi(this IEndpointRouteBuilder app)
    {
        var audit = app.MapGroup("/api/audit").AddEndpointFilter(ManagementEndpoints.RetryableErrors).RequireAuthorization(Permissions.Admin).RequireRateLimiting(Limits.ManagementPolicy);
        audit.MapGet("", SearchAsync);
        audit.MapGet("/verify", async (IGrainFactory grains) =>
        {
            var (records, problem) = await VerifyChainAsync(grains);
            return new { ok = problem is null, records, problem };
        });
        return app;
    }

    /// <summary>Every record in order, read a page at a time.</summary>
    public static async IAsyncEnumerable<AuditRecord> ReadAllAsync(IGrainFactory grains)
    {
        var log = grains.GetGrain<IAuditLogGrain>(0);
        for (long from = 1; ; from += Page)
        {
            var page = await log.ReadAsync(from, Page);
            foreach (var r in page)
            {
                yield return r;
            }
            if (page.Length < Page)
            {
                yield break;
            }
        }
    }

    /// <summary>Every record, newest first, read a page at a time from the head back.</summary>
    public static async IAsyncEnumerable<AuditRecord> ReadNewestFirstAsync(IGrainFactory grains)
    {
        var log = grains.GetGrain<IAuditLogGrain>(0);
        var (count, _) = await log.HeadAsync();
        for (var end = count; end >= 1; end -= Page)
        {
            var from = Math.Max(1, end - Page + 1);
            var page = await log.ReadAsync(from, (int)(end - from + 1));
            for (var i = page.Length - 1; i >= 0; i--)
            {
                yield return page[i];
            }
        }
    }

    /// <summary>Walks the whole trail against its head: the record count and the first problem, or null when the chain holds.</summary>
    public static async Task<(long Records, string? Problem)> VerifyChainAsync(IGrainFactory grains)
    {
        var (count, last) = await grains.GetGrain<IAuditLogGrain>(0).HeadAsync();
        var records = new List<AuditRecord>();
        await foreach (var r in ReadAllAsync(grains))
        {
            records.Add(r);
        }
        return (count, AuditChain.Verify(records, count, last));
    }

    private static async Task SearchAsync(HttpContext context, IGrainFactory grains, string? actor, string? action, string? model, DateTimeOffset? from, DateTimeOffset? to, string? format, int? limit)
    {
        var max = Math.Clamp(limit ?? 1000, 1, 1_000_000);
        var lines = format?.ToLowerInvariant() switch
        {
            null or "json" => false,
            "jsonl" => true,
            _ => throw MedServeException.Invalid("format is json or jsonl", "format"),
        };
        context.Response.ContentType = lines ? "application/x-ndjson" : "application/json";
        if (lines)
        {
            context.Response.Headers.ContentDisposition = "attachment; filename=\"medserve-audit.jsonl\"";
        }
        var options = Compact;
        var first = true;
        var n = 0;
        if (!lines)
        {
            await context.Response.WriteAsync("[");
        }
        await foreach (var r in ReadAllAsync(grains))
        {
            var e = r.Event;
            if ((actor is not null && e.Actor != actor) || (action is not null && e.Action != action) || (model is not null && e.Model != model)
                || (from is not null && e.At < from) || (to is not null && e.At > to))
            {
                continue;
            }
            var json = JsonSerializer.Serialize(r, options);
            await context.Response.WriteAsync(lines ? json + "\n" : (first ? "" : ",") + json);
            first = false;
            if (++n >= max)
            {
                break;
            }
        }
        if (!lines)
        {
            await context.Response.WriteAsync("]");
        }
    }
}
