using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;

namespace MedServe.Dashboard.Security;

/// <summary>
/// Auditing of HTTP endpoints: <c>.Audited(action)</c> records every call of an endpoint (its caller's key id, the
/// model and version from the route or from <see cref="Note"/>, the outcome), whether it succeeds or fails.
/// </summary>
public static class Audit
{
    private const string ModelItem = "medserve.audit.model";
    private const string VersionItem = "medserve.audit.version";
    private const string InputItem = "medserve.audit.input";
    private const string DetailItem = "medserve.audit.detail";
    private const string ActionItem = "medserve.audit.action";

    /// <summary>What a handler knows for the audit record that the route does not say (ids and hashes only).</summary>
    public static void Note(HttpContext context, string? model = null, string? version = null, string? inputSha256 = null, string? detail = null, string? action = null)
    {
        if (model is not null)
        {
            context.Items[ModelItem] = model;
        }
        if (version is not null)
        {
            context.Items[VersionItem] = version;
        }
        if (inputSha256 is not null)
        {
            context.Items[InputItem] = inputSha256;
        }
        if (detail is not null)
        {
            context.Items[DetailItem] = detail;
        }
        if (action is not null)
        {
            context.Items[ActionItem] = action;
        }
    }

    public static TBuilder Audited<TBuilder>(this TBuilder builder, string action) where TBuilder : IEndpointConventionBuilder =>
        builder.AddEndpointFilter(async (context, next) =>
        {
            var http = context.HttpContext;
            var outcome = "ok";
            try
            {
                var result = await next(context);
                if (result is IStatusCodeHttpResult { StatusCode: >= 400 } failed)
                {
                    outcome = failed.StatusCode?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "error";
                }
                return result;
            }
            catch (MedServeException e)
            {
                outcome = e.Kind.ToString();
                throw;
            }
            catch (Exception e) when (e is TimeoutException or OrleansException)
            {
                outcome = nameof(ErrorKind.NotReady);
                throw;
            }
            finally
            {
                string? Item(string key) => http.Items.TryGetValue(key, out var v) ? v as string : null;
                string? Route(string key) => http.Request.RouteValues.TryGetValue(key, out var v) ? v as string : null;
                http.RequestServices.GetRequiredService<AuditWriter>().Record(http, Item(ActionItem) ?? action,
                    Item(ModelItem) ?? Route("name"), Item(VersionItem) ?? Route("version"), Item(InputItem), outcome, Item(DetailItem) ?? Route("id"));
            }
        });
}
