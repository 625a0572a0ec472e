using MedServe.Protocol;

namespace MedServe.Dashboard.Components.Shared;

/// <summary>How the pages put an error into words: what happened (as the API's status would say) and the message.</summary>
public static class ErrorText
{
    public static string Of(MedServeException e) => $"{ErrorStatus.TitleOf(e.Kind)}: {e.Message}";
}
